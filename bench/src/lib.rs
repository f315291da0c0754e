//! What `parley-bench` is made of that tests use too: the Janus videoroom driver the anchor loads Janus
//! with ([`janus`]) and the root-only network-namespace lab that runs Janus and parley side by side
//! ([`janus::lab`]).

pub mod janus;
