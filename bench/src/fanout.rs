//! The physical reference: a plain UDP fan-out (receive a datagram, send it to N addresses with
//! `sendmmsg`, no encryption, no RTP), measured on the same machine in the same run.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use crate::procstat::thread_cpu;

pub struct FanoutResult {
    pub packets_in: u64,
    pub packets_out: u64,
    pub cpu: Duration,
    pub wall: Duration,
    pub received_by_sinks: u64,
}

impl FanoutResult {
    pub fn packets_per_core_second(&self) -> f64 {
        self.packets_out as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

const BATCH: usize = 64;

/// How the receivers of the fan-out read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sinks {
    /// One thread polls every socket without blocking: delivering a datagram wakes nobody.
    Polled,
    /// A task per socket on a multi-thread tokio runtime, waiting in epoll, as the load generator's
    /// participants do: each delivery may wake a thread, and the sender's kernel pays for it, as
    /// parley's does in the same scenario.
    Waiting,
}

/// The load of one benchmark step without parley: `rooms` rooms of `room_size` senders, each
/// sending `rate` packets/s of `size` bytes to the hub, which sends each packet to the other
/// members of the sender's room (each member has its own socket). Runs for `duration`.
pub fn run(
    rooms: usize,
    room_size: usize,
    rate: u32,
    size: usize,
    sinks: Sinks,
    duration: Duration,
) -> std::io::Result<FanoutResult> {
    let hub = UdpSocket::bind("127.0.0.1:0")?;
    let hub_addr = hub.local_addr()?;
    hub.set_read_timeout(Some(Duration::from_millis(50)))?;
    socket2::SockRef::from(&hub).set_recv_buffer_size(4 << 20)?;
    socket2::SockRef::from(&hub).set_send_buffer_size(4 << 20)?;
    let members = rooms * room_size;
    // Every member sends from and receives on the same socket, like a WebRTC participant.
    let member_sockets: Vec<UdpSocket> = (0..members)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let member_addrs: Vec<SockAddr> = member_sockets
        .iter()
        .map(|s| s.local_addr().map(SockAddr::from))
        .collect::<Result<_, _>>()?;
    // Source port -> member index, so the hub finds the room.
    let mut member_of_port = std::collections::HashMap::new();
    for (i, a) in member_addrs.iter().enumerate() {
        if let Some(a) = a.as_socket() {
            member_of_port.insert(a.port(), i);
        }
    }
    for s in &member_sockets {
        socket2::SockRef::from(s).set_recv_buffer_size(1 << 20)?;
    }
    let send_sockets: Vec<UdpSocket> = member_sockets
        .iter()
        .map(|s| s.try_clone())
        .collect::<Result<_, _>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let sink_thread = {
        let stop = stop.clone();
        let received = received.clone();
        std::thread::spawn(move || match sinks {
            Sinks::Polled => poll_sinks(member_sockets, &stop, &received),
            Sinks::Waiting => wait_sinks(member_sockets, &stop, &received),
        })
    };

    // Senders: paced in 1 ms steps.
    let sender_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            let payload = vec![0x80u8; size];
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    for s in &send_sockets {
                        let _ = s.send_to(&payload, hub_addr);
                    }
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
    };

    // The fan-out itself, on this thread, measured with this thread's CPU clock.
    let cpu_start = thread_cpu();
    let wall_start = Instant::now();
    let mut packets_in = 0u64;
    let mut packets_out = 0u64;
    let mut buf = [0u8; 2048];
    let fd = hub.as_raw_fd();
    let mut targets: Vec<&SockAddr> = Vec::with_capacity(room_size);
    while wall_start.elapsed() < duration {
        let Ok((n, from)) = hub.recv_from(&mut buf) else {
            continue;
        };
        let Some(&member) = member_of_port.get(&from.port()) else {
            continue;
        };
        packets_in += 1;
        let room = member / room_size;
        targets.clear();
        targets.extend(
            (room * room_size..(room + 1) * room_size)
                .filter(|&m| m != member)
                .map(|m| &member_addrs[m]),
        );
        for chunk in targets.chunks(BATCH) {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: n,
            };
            let mut headers: [libc::mmsghdr; BATCH] =
                // SAFETY: an all-zero mmsghdr is valid; the used ones are filled below.
                unsafe { std::mem::zeroed() };
            for (h, addr) in headers.iter_mut().zip(chunk) {
                h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addr.len();
                h.msg_hdr.msg_iov = &mut iov;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: headers point at live addresses and the buffer for the duration of the call.
            let sent = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), chunk.len() as u32, 0) };
            if sent > 0 {
                packets_out += sent as u64;
            }
        }
    }
    let cpu = thread_cpu() - cpu_start;
    let wall = wall_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sender_thread.join();
    let _ = sink_thread.join();
    Ok(FanoutResult {
        packets_in,
        packets_out,
        cpu,
        wall,
        received_by_sinks: received.load(Ordering::Relaxed),
    })
}

fn poll_sinks(sockets: Vec<UdpSocket>, stop: &AtomicBool, received: &AtomicU64) {
    for s in &sockets {
        let _ = s.set_nonblocking(true);
    }
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        for s in &sockets {
            while s.recv(&mut buf).is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
                any = true;
            }
        }
        if !any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn wait_sinks(sockets: Vec<UdpSocket>, stop: &AtomicBool, received: &AtomicU64) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let count = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for s in sockets {
            let _ = s.set_nonblocking(true);
            let Ok(socket) = tokio::net::UdpSocket::from_std(s) else {
                continue;
            };
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while socket.recv(&mut buf).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.abort();
        }
    });
    received.store(count.load(Ordering::Relaxed), Ordering::Relaxed);
}
