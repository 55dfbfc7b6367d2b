//! CancelRequest routing. A client gets made-up BackendKeyData from piha;
//! a cancel carrying it is forwarded to the server connection that client
//! holds *at that moment*, and to no other.
//!
//! Two races make other poolers cancel the wrong query (PgBouncer #245,
//! PgCat's client_server_map): the server may be handed to another client
//! between the lookup and the cancel's arrival, and PostgreSQL acts on a
//! cancel whenever its signal lands, even in the next client's query. So:
//! the lookup marks the lease canceled under the lease's lock, which
//! release also takes; and a server whose lease was marked is closed at
//! release instead of being reused, so a late signal has nothing to hit.
//! The signal itself is sent after the lock is let go: whichever order it
//! and the release come in, it can only reach that closed server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// The server a client holds now.
#[derive(Debug, Clone, Copy)]
pub struct LeaseKey {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

/// One client's cancel slot.
pub struct CancelSlot {
    pub secret: i32,
    /// A std mutex, held for a few instructions and never across an await:
    /// every lease takes it twice, and tokio's async mutex cost 4 % of the
    /// pooler's instructions per transaction (scripts/profile-pooler).
    lease: Mutex<LeaseState>,
    /// Wakes the client if it is waiting for a server connection.
    pub waiting: Notify,
    /// Cancels that came while the client held no server. Read before a
    /// try for a server, so that one during a try that then fails is not
    /// missed by the wait that follows.
    pub wait_cancels: AtomicU64,
}

#[derive(Default)]
struct LeaseState {
    key: Option<LeaseKey>,
    /// A cancel was forwarded during the current lease.
    canceled: bool,
}

impl CancelSlot {
    /// The client got a server.
    pub fn lease(&self, key: LeaseKey) {
        *lock(&self.lease) = LeaseState {
            key: Some(key),
            canceled: false,
        };
    }

    /// The client gives its server back. True when a cancel was sent during
    /// the lease: the server must then be closed, not reused.
    pub fn release(&self) -> bool {
        std::mem::take(&mut *lock(&self.lease)).canceled
    }

    /// The server to cancel, if the client holds one; marks the lease so
    /// that release closes that server. None: not holding a server.
    fn mark_canceled(&self) -> Option<LeaseKey> {
        let mut lease = lock(&self.lease);
        let key = lease.key?;
        lease.canceled = true;
        Some(key)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every logged-in client's slot, by the pid piha gave it.
#[derive(Default)]
pub struct CancelMap {
    map: Mutex<HashMap<i32, Arc<CancelSlot>>>,
}

/// How long forwarding one cancel may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

impl CancelMap {
    /// A new client's keys and slot; the pid is unique among live clients.
    pub fn register(&self) -> (i32, Arc<CancelSlot>) {
        let mut rng = rand::rng();
        let mut map = lock(&self.map);
        loop {
            let pid: i32 = rng.random_range(1..i32::MAX);
            if map.contains_key(&pid) {
                continue;
            }
            let slot = Arc::new(CancelSlot {
                secret: rng.random(),
                lease: Mutex::new(LeaseState::default()),
                waiting: Notify::new(),
                wait_cancels: AtomicU64::new(0),
            });
            map.insert(pid, slot.clone());
            return (pid, slot);
        }
    }

    pub fn unregister(&self, pid: i32) {
        lock(&self.map).remove(&pid);
    }

    /// Handles a CancelRequest. Returns what happened, for the log.
    pub async fn cancel(&self, pid: i32, secret: i32) -> CancelOutcome {
        let slot = {
            let map = lock(&self.map);
            match map.get(&pid) {
                Some(s) if s.secret == secret => s.clone(),
                // Wrong keys are ignored silently, as PostgreSQL does.
                _ => return CancelOutcome::Unknown,
            }
        };
        let Some(key) = slot.mark_canceled() else {
            // Not holding a server: maybe waiting for one.
            slot.wait_cancels.fetch_add(1, Ordering::SeqCst);
            slot.waiting.notify_waiters();
            return CancelOutcome::Waiting;
        };
        match tokio::time::timeout(CANCEL_TIMEOUT, send_cancel(key)).await {
            Ok(Ok(())) => CancelOutcome::Forwarded(key.addr),
            _ => CancelOutcome::Failed(key.addr),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Forwarded(SocketAddr),
    Failed(SocketAddr),
    Waiting,
    Unknown,
}

async fn send_cancel(key: LeaseKey) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(key.pid, key.secret, &mut out);
    let mut tcp = tokio::net::TcpStream::connect(key.addr).await?;
    tcp.write_all(&out).await?;
    // PostgreSQL closes the connection once it has read the request;
    // waiting for that means the signal has been sent when we return.
    let mut sink = [0u8; 16];
    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await;
    Ok(())
}
