//! What `parley-bench` is made of that tests use too: the Janus videoroom driver the anchor loads Janus
//! with ([`janus`]), the root-only network-namespace lab that runs Janus and parley side by side
//! ([`janus::lab`]), and CPU lists for pinning processes ([`cpus`]).

pub mod cpus;
pub mod janus;
