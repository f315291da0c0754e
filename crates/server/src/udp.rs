//! Batched UDP I/O: `recvmmsg` and `sendmmsg` move many datagrams per system call, which is what lets
//! one core forward hundreds of thousands of packets a second.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};
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
    sources: Vec<Option<SocketAddr>>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            data: vec![0; BATCH * DATAGRAM_MAX],
            lengths: [0; BATCH],
            sources: vec![None; BATCH],
            count: 0,
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
}

/// Reads up to [`BATCH`] waiting datagrams without blocking. `Ok(0)` is never returned: no data is
/// `WouldBlock`.
pub fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    socket.try_io(Interest::READABLE, || {
        let fd = socket.as_raw_fd();
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut names: [SockAddrStorage; BATCH] =
            std::array::from_fn(|_| SockAddrStorage::zeroed());
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::zeroed() }; BATCH];
        for i in 0..BATCH {
            let chunk = &mut batch.data[i * DATAGRAM_MAX..(i + 1) * DATAGRAM_MAX];
            iovecs[i].write(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
            // SAFETY: zeroed mmsghdr is a valid value; we fill the pointers below.
            let h = unsafe { headers[i].assume_init_mut() };
            h.msg_hdr.msg_name = (&mut names[i] as *mut SockAddrStorage).cast();
            h.msg_hdr.msg_namelen = names[i].size_of();
            h.msg_hdr.msg_iov = iovecs[i].as_mut_ptr();
            h.msg_hdr.msg_iovlen = 1;
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
            let len = h.msg_hdr.msg_namelen;
            let name = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
            // SAFETY: `name` holds `len` bytes of a socket address written by the kernel.
            let addr = unsafe { SockAddr::new(name, len) };
            batch.sources[i] = addr.as_socket();
        }
        batch.count = n;
        Ok(n)
    })
}

/// Sends datagrams to their destinations, [`BATCH`] per system call. A full send buffer drops the rest,
/// as a network would; returns how many were handed to the kernel.
pub fn send_batch<'a>(
    socket: &UdpSocket,
    datagrams: impl Iterator<Item = (SocketAddr, &'a [u8])>,
) -> usize {
    let fd = socket.as_raw_fd();
    let items: Vec<(SockAddr, &[u8])> = datagrams.map(|(a, d)| (SockAddr::from(a), d)).collect();
    let mut sent = 0;
    for chunk in items.chunks(BATCH) {
        let mut iovecs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, d)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = chunk
            .iter()
            .zip(iovecs.iter_mut())
            .map(|((addr, _), iov)| {
                // SAFETY: zeroed mmsghdr is valid; pointers are set to live data below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addr.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut offset = 0;
        while offset < headers.len() {
            // SAFETY: headers, iovecs, addresses and payloads outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[offset..].as_mut_ptr(),
                    (headers.len() - offset) as libc::c_uint,
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

/// Bigger kernel buffers absorb bursts (a keyframe fanned out to a full room).
pub fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
}
