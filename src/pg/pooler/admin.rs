//! The admin console: the virtual database `piha`. (Being written: SHOW
//! POOLS/CLIENTS/SERVERS/STATS/DATABASES, PAUSE, RESUME, RELOAD.)

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::shared::{ClientInfo, Pooler};
use super::stream::PgStream;
use crate::pg::wire::backend::{self, sqlstate};

pub async fn serve(_pooler: &Pooler, mut stream: PgStream, _buf: BytesMut, _info: &ClientInfo) {
    let mut out = BytesMut::new();
    backend::fatal(
        &mut out,
        sqlstate::FEATURE_NOT_SUPPORTED,
        "the admin console is not built yet",
    );
    let _ = stream.write_all(&out).await;
}
