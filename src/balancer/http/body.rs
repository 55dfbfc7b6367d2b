//! The two bodies the proxy streams, frame by frame, never buffered.
//!
//! `RequestBody` carries the client's body to a backend. It stays in a
//! shared slot until the backend connection first asks for it, so after a
//! failed attempt the proxy knows whether any of it left (a body never polled
//! never reached the backend, and the request may go to another). It counts
//! bytes against `max_body_bytes` and records why it failed, so the proxy can
//! tell a client's fault (400, 413) from a backend's (502).
//!
//! `ResponseBody` carries a backend's answer (or a local one) to the client,
//! holding the backend lease and the connection's in-flight mark until the
//! last byte: a request counts against `maxconn` for as long as it streams.
//! Its backend body holds the backend connection, given back to the idle
//! pool only when the answer ended cleanly (a body cut short closes it).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use super::conn::InFlight;
use super::stats::BackendCounters;
use super::upstream::BackendBody;
use crate::balancer::shared::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the client's body could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Over `max_body_bytes`.
    TooLarge,
    /// The client's stream broke or was malformed (bad chunking, reset).
    Client,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
struct TooLarge(u64);

/// The client's body between attempts.
pub struct BodySlot {
    incoming: Mutex<Option<Incoming>>,
    /// Known empty from the start (no body, or Content-Length: 0).
    empty: bool,
    hint: SizeHint,
    fault: AtomicU8,
}

impl BodySlot {
    pub fn new(body: Incoming) -> Arc<BodySlot> {
        Arc::new(BodySlot {
            empty: body.is_end_stream(),
            hint: body.size_hint(),
            incoming: Mutex::new(Some(body)),
            fault: AtomicU8::new(0),
        })
    }

    /// Known from the start to have no body (none, or Content-Length: 0).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// No byte of the body has been sent anywhere (or there is none).
    pub fn untouched(&self) -> bool {
        self.empty || self.lock().is_some()
    }

    pub fn fault(&self) -> Option<Fault> {
        match self.fault.load(Ordering::Acquire) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Client),
            _ => None,
        }
    }

    fn set_fault(&self, f: Fault) {
        let v = match f {
            Fault::TooLarge => 1,
            Fault::Client => 2,
        };
        self.fault.store(v, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One attempt's view of the client's body.
pub struct RequestBody {
    slot: Arc<BodySlot>,
    /// Taken from the slot on first poll; from then on this attempt owns it.
    live: Option<Incoming>,
    done: bool,
    limit: Option<u64>,
    seen: u64,
    counters: Arc<BackendCounters>,
}

impl RequestBody {
    pub fn new(
        slot: Arc<BodySlot>,
        limit: Option<u64>,
        counters: Arc<BackendCounters>,
    ) -> RequestBody {
        RequestBody {
            done: slot.empty,
            slot,
            live: None,
            limit,
            seen: 0,
            counters,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.live.is_none() {
            this.live = this.slot.lock().take();
        }
        let Some(live) = this.live.as_mut() else {
            // Another attempt took it: nothing to send from here.
            this.done = true;
            return Poll::Ready(None);
        };
        match std::task::ready!(Pin::new(live).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.seen += n;
                    this.counters.bytes_in.fetch_add(n, Ordering::Relaxed);
                    if let Some(limit) = this.limit.filter(|&l| this.seen > l) {
                        this.slot.set_fault(Fault::TooLarge);
                        this.done = true;
                        return Poll::Ready(Some(Err(Box::new(TooLarge(limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.slot.set_fault(Fault::Client);
                this.done = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.live {
            Some(live) => live.is_end_stream(),
            None => self.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.live {
            Some(live) => live.size_hint(),
            None if self.done => SizeHint::with_exact(0),
            None => self.slot.hint,
        }
    }
}

/// What goes back to the client.
pub struct ResponseBody {
    kind: Kind,
    /// Released at the end of the stream, not when hyper gets round to
    /// dropping the body.
    lease: Option<Lease>,
    in_flight: Option<InFlight>,
    counters: Option<Arc<BackendCounters>>,
}

enum Kind {
    Proxied(BackendBody),
    Local(Option<Bytes>),
}

impl ResponseBody {
    pub fn proxied(
        body: BackendBody,
        lease: Lease,
        counters: Arc<BackendCounters>,
    ) -> ResponseBody {
        ResponseBody {
            kind: Kind::Proxied(body),
            lease: Some(lease),
            in_flight: None,
            counters: Some(counters),
        }
    }

    pub fn local(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
            lease: None,
            in_flight: None,
            counters: None,
        }
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::local(Bytes::new())
    }

    /// Keeps the connection's request counted as in flight until the body
    /// is done.
    pub fn hold(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// `clean`: the backend's answer was read to its end, so its
    /// connection can serve another request. The connection goes back
    /// before the lease, so a request the lease release wakes finds it.
    fn finish(&mut self, clean: bool) {
        if let Kind::Proxied(body) = &mut self.kind {
            if clean {
                body.give_back();
            }
        }
        self.lease = None;
        self.in_flight = None;
    }
}

impl Drop for ResponseBody {
    /// hyper does not poll a body that says it is at its end (a HEAD, a
    /// 204 or 304, the last frame of a sized body): dropped then, it ended
    /// cleanly.
    fn drop(&mut self) {
        let clean = match &self.kind {
            Kind::Proxied(body) => body.is_end_stream(),
            Kind::Local(_) => false,
        };
        self.finish(clean);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let next = match &mut this.kind {
            Kind::Local(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Kind::Proxied(body) => match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let (Some(data), Some(c)) = (frame.data_ref(), &this.counters) {
                        c.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Some(Ok(frame))
                }
                Some(Err(e)) => Some(Err(Box::new(e) as BoxError)),
                None => None,
            },
        };
        match next {
            None => this.finish(true),
            Some(Err(_)) => this.finish(false),
            Some(Ok(_)) => {}
        }
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(bytes) => bytes.is_none(),
            Kind::Proxied(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Proxied(body) => body.size_hint(),
        }
    }
}
