//! Batched UDP I/O: `recvmmsg` and `sendmmsg` move many datagrams per system call, which is what lets
//! one core forward hundreds of thousands of packets a second.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams moved per system call at most.
pub const BATCH: usize = 64;
/// Largest datagram read; WebRTC stays under ~1200 bytes.
pub const DATAGRAM_MAX: usize = 2048;

/// Reusable buffers for [`recv_batch`].
pub struct RecvBatch {
    data: Vec<u8>,
    lengths: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    count: usize,
    drained: bool,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            data: vec![0; BATCH * DATAGRAM_MAX],
            lengths: [0; BATCH],
            sources: [None; BATCH],
            count: 0,
            drained: false,
        }
    }
}

impl RecvBatch {
    /// The datagrams of the last receive, with their sources.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.count).filter_map(|i| {
            let source = self.sources[i]?;
            let start = i * DATAGRAM_MAX;
            Some((source, &self.data[start..start + self.lengths[i]]))
        })
    }

    /// The last receive emptied the socket's queue: reading again now would find nothing.
    pub fn drained(&self) -> bool {
        self.drained
    }
}

/// Reads up to [`BATCH`] waiting datagrams without blocking. `Ok(0)` is never returned: no data is
/// `WouldBlock`. A batch that comes back short has emptied the queue ([`RecvBatch::drained`]); the
/// socket's readiness is then cleared at once, which saves the `recvmmsg` that would only have
/// answered "nothing" (epoll is edge-triggered: a datagram arriving after this read wakes us anew).
pub fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.count = 0;
    batch.drained = false;
    let result = socket.try_io(Interest::READABLE, || {
        let fd = socket.as_raw_fd();
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        // sockaddr_in6 holds an IPv4 address too; 28 bytes a name instead of sockaddr_storage's 128.
        // SAFETY: an all-zero sockaddr_in6 is a valid value.
        let mut names: [libc::sockaddr_in6; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        for i in 0..BATCH {
            let chunk = &mut batch.data[i * DATAGRAM_MAX..(i + 1) * DATAGRAM_MAX];
            iovecs[i].write(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
            // SAFETY: zeroed mmsghdr is a valid value; the pointers are set right after.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iovecs[i].as_mut_ptr();
            h.msg_hdr.msg_iovlen = 1;
            headers[i].write(h);
        }
        // SAFETY: every header points at live buffers of the stated sizes for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr().cast(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            // SAFETY: the kernel filled the first n headers and their names.
            let h = unsafe { headers[i].assume_init_ref() };
            batch.lengths[i] = (h.msg_len as usize).min(DATAGRAM_MAX);
            batch.sources[i] = read_sockaddr(&names[i], h.msg_hdr.msg_namelen);
        }
        batch.count = n;
        if n < BATCH {
            batch.drained = true;
            // Tells tokio the socket is empty, so it waits for the next edge instead of polling.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && batch.count > 0 => Ok(batch.count),
        other => other,
    }
}

/// The address the kernel wrote into `name` (`len` bytes of it).
fn read_sockaddr(name: &libc::sockaddr_in6, len: libc::socklen_t) -> Option<SocketAddr> {
    match name.sin6_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in at the start of the (larger) buffer.
            let v4: libc::sockaddr_in =
                unsafe { std::ptr::read((name as *const libc::sockaddr_in6).cast()) };
            let ip = std::net::Ipv4Addr::from(v4.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            let ip = std::net::Ipv6Addr::from(name.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(name.sin6_port),
                name.sin6_flowinfo,
                name.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends datagrams to their destinations, [`BATCH`] per system call. A full send buffer drops the rest,
/// as a network would; returns how many were handed to the kernel.
pub fn send_batch<'a>(
    socket: &UdpSocket,
    datagrams: impl Iterator<Item = (SocketAddr, &'a [u8])>,
) -> usize {
    let fd = socket.as_raw_fd();
    let mut datagrams = datagrams.peekable();
    let mut sent = 0;
    // Everything on the stack and filled in place: this runs after every received batch, and the
    // collected `SockAddr`s (128 bytes each) it used to build showed in the profile.
    let mut names: [libc::sockaddr_in6; BATCH] =
        // SAFETY: an all-zero sockaddr_in6 is a valid value.
        unsafe { std::mem::zeroed() };
    let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    while datagrams.peek().is_some() {
        let mut count = 0;
        for (destination, data) in datagrams.by_ref().take(BATCH) {
            let name_len = write_sockaddr(destination, &mut names[count]);
            iovecs[count].write(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            // SAFETY: zeroed mmsghdr is valid; pointers are set to live data right after.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut names[count] as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = name_len;
            h.msg_hdr.msg_iov = iovecs[count].as_mut_ptr();
            h.msg_hdr.msg_iovlen = 1;
            headers[count].write(h);
            count += 1;
        }
        let mut offset = 0;
        while offset < count {
            // SAFETY: the first `count` headers are initialized and point at addresses, iovecs and
            // payloads that outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[offset..count].as_mut_ptr().cast(),
                    (count - offset) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    // Full buffer: drop. Unreachable peer (ICMP) or bad address: skip this one.
                    io::ErrorKind::WouldBlock => return sent,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        tracing::debug!("send failed: {e}");
                        offset += 1;
                        continue;
                    }
                }
            }
            offset += n as usize;
            sent += n as usize;
        }
    }
    sent
}

/// Writes `addr` as the kernel takes it (a `sockaddr_in` fits in a `sockaddr_in6`); returns its length.
fn write_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_in6) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in is smaller than sockaddr_in6 and both are plain C structs.
            unsafe {
                std::ptr::write(
                    (out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            *out = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Bigger kernel buffers absorb bursts (a keyframe fanned out to a full room).
pub fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More datagrams than one system call takes, to IPv4 and IPv6 receivers, arrive whole and
    /// in order, and the receiving batch reports the sender.
    #[tokio::test]
    async fn batches_reach_v4_and_v6_receivers() {
        for ip in ["127.0.0.1", "::1"] {
            let Ok(receiver) = std::net::UdpSocket::bind((ip, 0)) else {
                continue; // no IPv6 on this machine
            };
            receiver.set_nonblocking(true).unwrap();
            enlarge_buffers(&receiver);
            let to = receiver.local_addr().unwrap();
            let receiver = UdpSocket::from_std(receiver).unwrap();
            let sender = UdpSocket::bind((ip, 0)).await.unwrap();
            let from = sender.local_addr().unwrap();
            let payloads: Vec<Vec<u8>> = (0..BATCH as u16 * 2 + 5)
                .map(|i| i.to_be_bytes().repeat(1 + i as usize % 7))
                .collect();
            let sent = send_batch(&sender, payloads.iter().map(|p| (to, &p[..])));
            assert_eq!(sent, payloads.len());
            let mut got = Vec::new();
            let mut batch = RecvBatch::default();
            while got.len() < payloads.len() {
                receiver.readable().await.unwrap();
                match recv_batch(&receiver, &mut batch) {
                    Ok(_) => {
                        for (source, data) in batch.iter() {
                            assert_eq!(source, from);
                            got.push(data.to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, payloads, "{ip}");
        }
    }
}
