//! The client side: `login` (TLS, startup, authentication, the greeting),
//! then `session` (routing, leasing, relaying) until the client leaves.

pub mod login;
pub mod params;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::shared::Pooler;
use crate::pg::wire::backend::{self, sqlstate};

/// Serves one client connection from accept to close.
pub async fn serve(pooler: Arc<Pooler>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let (max, tcp_user_timeout) = {
        let settings = pooler.settings.load();
        (
            settings.pg.max_client_conn,
            settings.pg.client_tcp_user_timeout,
        )
    };
    // A client on a node that lost its power must not keep its server
    // connection (and the locks of a transaction it left open) for ever.
    crate::tcp_timeout::apply(&tcp, tcp_user_timeout);
    let open = pooler.clients.fetch_add(1, Ordering::Relaxed) + 1;
    let _count = ClientCount(&pooler);
    if open > max {
        refuse(
            tcp,
            &format!("too many clients: the pooler allows {max} connections at once"),
        )
        .await;
        return;
    }
    pooler.clients_total.fetch_add(1, Ordering::Relaxed);
    // Boxed, and so freed once the client is in: the login's future (TLS
    // handshake, SCRAM) is larger than the session's, and an idle client's
    // task would otherwise keep room for it for as long as it stays.
    let Some(logged_in) = Box::pin(login::login(&pooler, tcp, peer)).await else {
        return;
    };
    session::run(pooler.clone(), logged_in).await;
}

struct ClientCount<'a>(&'a Pooler);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refuses before the startup packet is read: PostgreSQL clients accept an
/// ErrorResponse as the first message.
async fn refuse(mut tcp: TcpStream, text: &str) {
    let mut out = BytesMut::new();
    backend::fatal(&mut out, sqlstate::TOO_MANY_CONNECTIONS, text);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tcp.write_all(&out)).await;
}
