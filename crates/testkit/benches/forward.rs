//! How fast one media core forwards: one publisher, N subscribers, real str0m peers with DTLS-SRTP on
//! the in-memory network. Counts only the time spent inside `MediaCore` calls (SRTP decrypt, routing,
//! SRTP encrypt for every subscriber), so the figure is packets forwarded per second of one core.
//!
//! Run: `cargo bench -p parley-testkit --bench forward`

use std::time::Duration;

use parley_testkit::net::{talk_for, Net};

fn main() {
    println!("| subscribers | packets in | packets forwarded | core busy (ms) | forwarded packets/s per core | µs per forwarded packet |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for subscribers in [1usize, 5, 10, 20] {
        let mut net = Net::new();
        net.join(1, "band");
        for s in 0..subscribers {
            net.join(2 + s as u64, "band");
        }
        // Connect everyone (ICE, DTLS, negotiation), with only the publisher talking.
        for (_, c) in net.clients.iter_mut().skip(1) {
            c.audio_mid = None;
        }
        talk_for(&mut net, Duration::from_secs(2));
        let before = net.counters();
        net.media_busy = Duration::ZERO;
        // 10 s of a publisher sending 50 packets/s, repeated 20 times per step to load the core.
        let mut frame = 1_000u64;
        net.run(Duration::from_secs(10), |n| {
            for _ in 0..20 {
                frame += 1;
                n.speak(frame);
            }
        });
        let after = net.counters();
        let forwarded = after.forwarded_packets - before.forwarded_packets;
        let inbound = forwarded / subscribers.max(1) as u64;
        let busy = net.media_busy.as_secs_f64();
        println!(
            "| {subscribers} | {inbound} | {forwarded} | {:.0} | {:.0} | {:.2} |",
            busy * 1000.0,
            forwarded as f64 / busy,
            busy * 1e6 / forwarded.max(1) as f64
        );
    }
}
