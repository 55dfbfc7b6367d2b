//! The bytes of the sock_diag messages this module sends and reads (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h), as plain
//! functions over byte slices so they are tested without a kernel.
//!
//! Written by hand: the crate for these messages (netlink-packet-sock-diag
//! 0.5) needs rustc 1.87, and the ARM builds use Debian's 1.85; the two
//! fixed-size structures below are all this module needs of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;

/// Message types: a dump or an exact lookup, and the abort of one socket.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
pub const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;

/// struct nlmsghdr.
const HEADER_LEN: usize = 16;
/// struct inet_diag_sockid: ports, two 16-byte addresses, interface, cookie.
pub const SOCKID_LEN: usize = 48;
/// struct inet_diag_req_v2: family, protocol, extensions, pad, states, id.
const REQUEST_LEN: usize = 8 + SOCKID_LEN;
/// struct inet_diag_msg: family, state, timer, retrans, id, then five u32
/// (expires, queues, uid, inode); attributes may follow.
const SOCKET_LEN: usize = 4 + SOCKID_LEN + 20;

/// The TCP states a connection with a request in flight can be in, as the
/// kernel numbers them (include/net/tcp_states.h: SYN_RECV is 3, TIME_WAIT
/// 6, LISTEN 10); a dump asks for a set of them as bits `1 << state`.
pub mod state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const CLOSING: u32 = 11;
}

/// One TCP socket as a dump names it: what a SOCK_DESTROY sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    pub family: u8,
    /// inet_diag_sockid as received (network byte order, cookie included:
    /// the kernel checks it, so a socket reused meanwhile is not hit).
    pub raw: [u8; SOCKID_LEN],
}

impl SocketId {
    /// The socket's own (local) address.
    pub fn local(&self) -> IpAddr {
        self.address(4)
    }

    /// The socket's own port.
    pub fn local_port(&self) -> u16 {
        u16::from_be_bytes([self.raw[0], self.raw[1]])
    }

    /// The peer's address and port.
    pub fn remote(&self) -> SocketAddr {
        let port = u16::from_be_bytes([self.raw[2], self.raw[3]]);
        SocketAddr::new(self.address(20), port)
    }

    /// One of the two 16-byte address fields (an IPv4 address fills the
    /// first four bytes).
    fn address(&self, at: usize) -> IpAddr {
        let a = &self.raw[at..at + 16];
        if self.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(a);
            IpAddr::V6(Ipv6Addr::from(v6))
        }
    }
}

/// `idiag_timer` when the retransmission timer (or a loss probe) is armed:
/// sent data waits for its acknowledgement.
pub const TIMER_RETRANSMIT: u8 = 1;

/// One TCP socket of a dump: its id and what its head of struct
/// inet_diag_msg says about its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub id: SocketId,
    /// The TCP state, numbered as in `state`.
    pub state: u8,
    /// Which timer is armed (`TIMER_RETRANSMIT`, 0 for none...).
    pub timer: u8,
    /// With `TIMER_RETRANSMIT`: how many retransmission timeouts in a row
    /// expired with no acknowledgement (icsk_retransmits). 0 while the
    /// peer acknowledges; a silent peer makes it grow.
    pub retransmits: u8,
}

/// What one netlink message of an answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A socket of a dump.
    Socket(TcpSocket),
    /// The end of a dump.
    Done,
    /// An acknowledgement (error 0) or a failure (a positive errno).
    Status(i32),
    /// Something this module does not ask for.
    Other,
}

/// A dump of the TCP sockets of `family` in the states `states` (bits).
pub fn dump_request(seq: u32, family: u8, states: u32) -> Vec<u8> {
    request(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        states,
        &[0; SOCKID_LEN],
    )
}

/// The abort of one socket, acknowledged.
pub fn destroy_request(seq: u32, id: &SocketId) -> Vec<u8> {
    request(
        SOCK_DESTROY,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        id.family,
        u32::MAX,
        &id.raw,
    )
}

fn request(
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    states: u32,
    id: &[u8; SOCKID_LEN],
) -> Vec<u8> {
    let len = HEADER_LEN + REQUEST_LEN;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    out.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    out.extend_from_slice(&states.to_ne_bytes());
    out.extend_from_slice(id);
    out
}

/// The messages of one datagram, each with its sequence number. A message
/// that claims more bytes than the datagram holds, or fewer than its own
/// header, is an error: the datagram is not trusted any further.
pub fn answers(datagram: &[u8]) -> Result<Vec<(u32, Answer)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while datagram.len() - at >= HEADER_LEN {
        let header = &datagram[at..at + HEADER_LEN];
        let len = u32_at(header, 0) as usize;
        if len < HEADER_LEN || len > datagram.len() - at {
            return Err(format!(
                "a sock_diag message claims {len} bytes, {} are left",
                datagram.len() - at
            ));
        }
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let seq = u32_at(header, 8);
        let body = &datagram[at + HEADER_LEN..at + len];
        out.push((seq, answer(kind, body)?));
        at += align4(len).min(datagram.len() - at);
    }
    Ok(out)
}

fn answer(kind: u16, body: &[u8]) -> Result<Answer, String> {
    match kind {
        NLMSG_ERROR | NLMSG_DONE => {
            if body.len() < 4 {
                return Err(format!("a sock_diag status of {} bytes", body.len()));
            }
            let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            if kind == NLMSG_DONE && code == 0 {
                Ok(Answer::Done)
            } else {
                Ok(Answer::Status(-code))
            }
        }
        SOCK_DIAG_BY_FAMILY => {
            if body.len() < SOCKET_LEN {
                return Err(format!("a sock_diag socket of {} bytes", body.len()));
            }
            let mut raw = [0u8; SOCKID_LEN];
            raw.copy_from_slice(&body[4..4 + SOCKID_LEN]);
            Ok(Answer::Socket(TcpSocket {
                id: SocketId {
                    family: body[0],
                    raw,
                },
                state: body[1],
                timer: body[2],
                retransmits: body[3],
            }))
        }
        _ => Ok(Answer::Other),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Netlink messages sit on 4-byte boundaries.
fn align4(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel would send it: header, then `body`.
    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(body);
        out
    }

    fn socket(family: u8, local: &[u8], cookie: u8) -> Vec<u8> {
        let mut body = vec![family, 1, TIMER_RETRANSMIT, 3];
        let mut id = [0u8; SOCKID_LEN];
        id[0..2].copy_from_slice(&80u16.to_be_bytes());
        id[2..4].copy_from_slice(&49152u16.to_be_bytes());
        id[4..4 + local.len()].copy_from_slice(local);
        id[20..20 + local.len()].copy_from_slice(local);
        id[20 + local.len() - 1] ^= 1;
        id[40] = cookie;
        body.extend_from_slice(&id);
        body.extend_from_slice(&[0; 20]);
        body
    }

    #[test]
    fn a_dump_request_is_header_and_inet_diag_req_v2() {
        let bytes = dump_request(7, AF_INET, 1 << state::ESTABLISHED);
        assert_eq!(bytes.len(), 72);
        assert_eq!(u32_at(&bytes, 0), 72);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 20);
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), 0x301);
        assert_eq!(u32_at(&bytes, 8), 7);
        assert_eq!(&bytes[16..20], &[AF_INET, 6, 0, 0]);
        assert_eq!(u32_at(&bytes, 20), 2);
    }

    #[test]
    fn a_dump_answer_gives_each_socket_and_its_id_back_unchanged() {
        let mut datagram = message(
            SOCK_DIAG_BY_FAMILY,
            3,
            &socket(AF_INET, &[192, 0, 2, 10], 9),
        );
        let mapped = Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped().octets();
        datagram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            3,
            &socket(AF_INET6, &mapped, 4),
        ));
        datagram.extend(message(NLMSG_DONE, 3, &0i32.to_ne_bytes()));
        let got = answers(&datagram).expect("parses");
        assert_eq!(got.len(), 3);
        let Answer::Socket(v4) = got[0].1 else {
            panic!("{got:?}")
        };
        assert_eq!(
            (v4.state, v4.timer, v4.retransmits),
            (1, TIMER_RETRANSMIT, 3)
        );
        let v4 = v4.id;
        assert_eq!(v4.local(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(v4.remote(), "192.0.2.11:49152".parse().expect("an address"));
        assert_eq!(v4.raw[40], 9, "the cookie is kept");
        let Answer::Socket(v6) = got[1].1 else {
            panic!("{got:?}")
        };
        assert_eq!(v6.id.local().to_canonical(), v4.local());
        assert_eq!(v6.id.remote().port(), 49152);
        assert_eq!(got[2], (3, Answer::Done));
        // What goes back to the kernel names the same socket.
        let destroy = destroy_request(4, &v4);
        assert_eq!(u16::from_ne_bytes([destroy[4], destroy[5]]), SOCK_DESTROY);
        assert_eq!(&destroy[24..], &v4.raw);
    }

    #[test]
    fn errors_and_acks_carry_the_errno() {
        let mut datagram = message(NLMSG_ERROR, 5, &(-libc::ENOENT).to_ne_bytes());
        datagram.extend(message(NLMSG_ERROR, 6, &0i32.to_ne_bytes()));
        let got = answers(&datagram).expect("parses");
        assert_eq!(
            got,
            vec![(5, Answer::Status(libc::ENOENT)), (6, Answer::Status(0))]
        );
    }

    #[test]
    fn a_short_or_lying_datagram_is_an_error_not_a_panic() {
        let whole = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &socket(AF_INET, &[192, 0, 2, 10], 0),
        );
        for cut in 17..whole.len() {
            assert!(answers(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = whole.clone();
        lying[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(answers(&lying).is_err());
        let mut tiny = whole;
        tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(answers(&tiny).is_err());
        assert_eq!(answers(&[0u8; 10]), Ok(vec![]));
        let status = message(NLMSG_ERROR, 1, &[0, 0]);
        assert!(answers(&status).is_err());
    }
}
