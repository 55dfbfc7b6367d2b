//! The admin console: the virtual database `piha`, PgBouncer's console
//! under another name. SHOW POOLS/CLIENTS/SERVERS/STATS/DATABASES... with
//! PgBouncer's columns (`show`), PAUSE/RESUME/RELOAD (`control`), parsed by
//! `command`.
//!
//! Any user who logged in may SHOW; only the service user may change
//! anything. Like PgBouncer's, the console speaks the simple query protocol
//! only: an extended-protocol batch gets one clear error and its Sync a
//! ReadyForQuery.

pub mod command;
pub mod control;
pub mod show;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use self::command::{Command, parse};
use super::shared::{ClientInfo, Pooler};
use super::stream::PgStream;
use crate::pg::wire::WireError;
use crate::pg::wire::backend::{self, sqlstate};
use crate::pg::wire::frame::read_frame;
use crate::pg::wire::frontend as fe;

/// Console queries are one short line; anything bigger is not one.
const MAX_MESSAGE: usize = 64 * 1024;

pub async fn serve(pooler: &Pooler, mut stream: PgStream, mut buf: BytesMut, info: &ClientInfo) {
    let mut out = BytesMut::with_capacity(4096);
    // After an extended-protocol message: drop the rest up to Sync.
    let mut skipping = false;
    loop {
        let frame = match read_frame(&mut stream, &mut buf, MAX_MESSAGE).await {
            Ok(f) => f,
            Err(WireError::Closed) => return,
            Err(e) => {
                let code = match e {
                    WireError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    _ => sqlstate::PROTOCOL_VIOLATION,
                };
                backend::fatal(&mut out, code, &e.to_string());
                let _ = stream.write_all(&out).await;
                return;
            }
        };
        let msg = buf.split_to(frame.len);
        let body = &msg[5..];
        match frame.tag {
            fe::QUERY => {
                skipping = false;
                match fe::query_text(body) {
                    Ok(text) => run(pooler, info, text, &mut out).await,
                    Err(e) => {
                        backend::error(&mut out, sqlstate::PROTOCOL_VIOLATION, &e.to_string())
                    }
                }
                backend::ready_for_query(&mut out, b'I');
            }
            fe::FUNCTION_CALL => {
                backend::error(&mut out, sqlstate::FEATURE_NOT_SUPPORTED, EXTENDED);
                backend::ready_for_query(&mut out, b'I');
            }
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE | fe::FLUSH => {
                if !skipping {
                    backend::error(&mut out, sqlstate::FEATURE_NOT_SUPPORTED, EXTENDED);
                    skipping = true;
                }
            }
            fe::SYNC => {
                skipping = false;
                backend::ready_for_query(&mut out, b'I');
            }
            fe::TERMINATE => return,
            // No COPY ever starts here; stray COPY data is dropped, as
            // PostgreSQL drops it.
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
            other => {
                let text = format!("unexpected message type '{}'", other as char);
                backend::fatal(&mut out, sqlstate::PROTOCOL_VIOLATION, &text);
                let _ = stream.write_all(&out).await;
                return;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

const EXTENDED: &str = "the piha admin console speaks only the simple query protocol \
     (as PgBouncer's does): send the command as a plain query, e.g. with psql";

/// Runs one query; everything but the ReadyForQuery goes to `out`.
async fn run(pooler: &Pooler, info: &ClientInfo, text: &str, out: &mut BytesMut) {
    let command = match parse(text) {
        Ok(c) => c,
        Err(refused) => {
            backend::error(out, refused.code, &refused.message);
            return;
        }
    };
    if let Some(name) = needs_service_user(&command) {
        let service = pooler.settings.load().service_user.clone();
        if info.user != service {
            let text = format!("{name} is for the service user \"{service}\" only");
            backend::error(out, sqlstate::INSUFFICIENT_PRIVILEGE, &text);
            return;
        }
    }
    match command {
        Command::Empty => backend::empty_query(out),
        Command::Show(what) => show::answer(pooler, what, out),
        Command::SetIgnored => {
            backend::notice(out, "SET ignored");
            backend::command_complete(out, "SET");
        }
        Command::Pause(db) => control::pause(pooler, db.as_deref(), out).await,
        Command::Resume(db) => control::resume(pooler, db.as_deref(), out),
        Command::Reload => control::reload(pooler, out).await,
    }
}

fn needs_service_user(c: &Command) -> Option<&'static str> {
    match c {
        Command::Pause(_) => Some("PAUSE"),
        Command::Resume(_) => Some("RESUME"),
        Command::Reload => Some("RELOAD"),
        _ => None,
    }
}
