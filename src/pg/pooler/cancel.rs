//! CancelRequest routing. A client gets made-up BackendKeyData from piha;
//! a cancel carrying it is forwarded to the server connection that client
//! holds *at that moment*, and to no other.
//!
//! Two races make other poolers cancel the wrong query (PgBouncer #245,
//! PgCat's client_server_map): the server may be handed to another client
//! between the lookup and the cancel's arrival, and PostgreSQL acts on a
//! cancel whenever its signal lands, even in the next client's query. So:
//! the lookup and the send happen under the lease's lock, which release
//! also takes; and a server that had a cancel sent during a lease is closed
//! at release instead of being reused, so a late signal has nothing to hit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    lease: tokio::sync::Mutex<Option<LeaseKey>>,
    /// A cancel was forwarded during the current lease.
    canceled: AtomicBool,
    /// Wakes the client if it is waiting for a server connection.
    pub waiting: Notify,
}

impl CancelSlot {
    /// The client got a server.
    pub async fn lease(&self, key: LeaseKey) {
        let mut lease = self.lease.lock().await;
        *lease = Some(key);
        // Under the lock: a cancel that finds this lease sets the flag
        // after this, never before (it would be wiped, and the server reused).
        self.canceled.store(false, Ordering::Relaxed);
    }

    /// The client gives its server back. True when a cancel was sent during
    /// the lease: the server must then be closed, not reused.
    pub async fn release(&self) -> bool {
        let mut lease = self.lease.lock().await;
        *lease = None;
        self.canceled.swap(false, Ordering::Relaxed)
    }
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
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let pid: i32 = rng.random_range(1..i32::MAX);
            if map.contains_key(&pid) {
                continue;
            }
            let slot = Arc::new(CancelSlot {
                secret: rng.random(),
                lease: tokio::sync::Mutex::new(None),
                canceled: AtomicBool::new(false),
                waiting: Notify::new(),
            });
            map.insert(pid, slot.clone());
            return (pid, slot);
        }
    }

    pub fn unregister(&self, pid: i32) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }

    /// Handles a CancelRequest. Returns what happened, for the log.
    pub async fn cancel(&self, pid: i32, secret: i32) -> CancelOutcome {
        let slot = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&pid) {
                Some(s) if s.secret == secret => s.clone(),
                // Wrong keys are ignored silently, as PostgreSQL does.
                _ => return CancelOutcome::Unknown,
            }
        };
        let lease = slot.lease.lock().await;
        let Some(key) = *lease else {
            // Not holding a server: maybe waiting for one.
            slot.waiting.notify_waiters();
            return CancelOutcome::Waiting;
        };
        slot.canceled.store(true, Ordering::Relaxed);
        // Sent while holding the lease lock: release waits for us.
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
