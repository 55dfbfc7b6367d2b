//! The web role over real sockets on 127.0.0.1: files with ranges,
//! conditionals and precompressed variants, path safety with real symlinks,
//! the built-in endpoints, TLS with the self-signed certificate and its
//! reload, HTTP/2 (ALPN and h2c), the connection bounds and the access log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use piha::config::{AccessLog, TlsFiles, WebSettings};
use piha::web::{self, Limits, tls};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

// ---- fixtures -------------------------------------------------------------

/// A document root with known files, and a directory outside it.
struct Site {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
}

const HELLO: &[u8] = b"hello, piha\n";

fn big() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn site() -> Site {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("hello.txt"), HELLO).unwrap();
    std::fs::write(r.join("index.html"), "<!doctype html>home\n").unwrap();
    std::fs::write(r.join("app.js"), "console.log(1)\n").unwrap();
    std::fs::write(r.join("pic.png"), [0x89, b'P', b'N', b'G']).unwrap();
    std::fs::write(r.join("big.bin"), big()).unwrap();
    std::fs::write(r.join("style.css"), "p { margin: 0 }\n".repeat(50)).unwrap();
    std::fs::write(r.join("style.css.br"), "BROTLI-BYTES").unwrap();
    std::fs::write(r.join("style.css.gz"), "GZIP-BYTES").unwrap();
    std::fs::create_dir(r.join("docs")).unwrap();
    std::fs::write(r.join("docs/index.html"), "docs index\n").unwrap();
    // Would shadow the endpoint if files came first.
    std::fs::write(r.join("health"), "a file called health").unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), r.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("leakdir")).unwrap();
    std::os::unix::fs::symlink(r.join("hello.txt"), r.join("alias.txt")).unwrap();
    Site { root, outside }
}

fn settings(root: &Path) -> WebSettings {
    WebSettings {
        root: root.to_path_buf(),
        access_log: AccessLog::Off,
        ..WebSettings::default()
    }
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(app: web::WebApp, limits: Limits, tls: Option<TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(web::serve(listener, tls, app, limits, stop.clone()));
        Server { addr, stop, task }
    }

    async fn plain(settings: &WebSettings) -> Server {
        Server::start(web::router(settings, "test-node"), Limits::default(), None).await
    }

    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

// ---- clients ----------------------------------------------------------------

struct Resp {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

async fn collect(resp: hyper::Response<hyper::body::Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// One HTTP/1.1 request on a new connection.
async fn h1_send<S>(io: S, req: Request<Empty<Bytes>>) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

/// One HTTP/2 request on a new connection.
async fn h2_send<S>(io: S, req: Request<Empty<Bytes>>) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    h1_send(stream, request("GET", path, headers)).await
}

async fn head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    h1_send(stream, request("HEAD", path, headers)).await
}

/// Raw bytes in, everything until the server closes out: for requests a
/// well-behaved client library would refuse to send.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("server answers and closes")
        .ok();
    out
}

fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// ---- files -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_html_mime_types_and_directory_redirects() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;

    let r = get(a, "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"<!doctype html>home\n");
    assert_eq!(r.header("content-type"), "text/html");

    for (path, mime) in [
        ("/hello.txt", "text/plain"),
        ("/app.js", "text/javascript"),
        ("/pic.png", "image/png"),
        ("/big.bin", "application/octet-stream"),
        ("/style.css", "text/css"),
    ] {
        let r = get(a, path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").starts_with(mime),
            "{path}: {}",
            r.header("content-type")
        );
    }

    let r = get(a, "/docs", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), "/docs/");
    let r = get(a, "/docs?x=1", &[]).await;
    assert_eq!(r.header("location"), "/docs/?x=1");
    let r = get(a, "/docs/", &[]).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"docs index\n"[..])
    );
    assert_eq!(get(a, "/missing.txt", &[]).await.status, 404);
    assert_eq!(get(a, "/hello.txt/x", &[]).await.status, 404);
    let r = get(a, "/alias.txt", &[]).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, HELLO),
        "symlinks within the root are served"
    );

    let stream = TcpStream::connect(a).await.unwrap();
    let r = h1_send(stream, request("POST", "/hello.txt", &[])).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET, HEAD");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_with_etag_and_dates() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let first = get(a, "/hello.txt", &[]).await;
    let etag = first.header("etag").to_owned();
    let lm = first.header("last-modified").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    assert!(!lm.is_empty());

    let r = get(a, "/hello.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), etag);
    assert_eq!(
        get(a, "/hello.txt", &[("if-none-match", "\"other\"")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(a, "/hello.txt", &[("if-modified-since", &lm)])
            .await
            .status,
        304
    );
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    assert_eq!(
        get(a, "/hello.txt", &[("if-modified-since", old)])
            .await
            .status,
        200
    );
    let both = [
        ("if-none-match", "\"other\""),
        ("if-modified-since", lm.as_str()),
    ];
    assert_eq!(
        get(a, "/hello.txt", &both).await.status,
        200,
        "If-None-Match wins"
    );
    assert_eq!(
        get(a, "/hello.txt", &[("if-match", "\"other\"")])
            .await
            .status,
        412
    );
    assert_eq!(
        get(a, "/hello.txt", &[("if-unmodified-since", old)])
            .await
            .status,
        412
    );

    // A changed file gets a new tag; the old one no longer validates, at
    // the latest once the lookup cache's second is over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(s.root.path().join("hello.txt"), b"changed!\n").unwrap();
    tokio::time::sleep(piha::web::files::cache::VALID_FOR + Duration::from_millis(50)).await;
    let r = get(a, "/hello.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.header("etag"), etag);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_and_unsatisfiable_ranges() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let r = get(a, "/big.bin", &[("range", "bytes=1000-1999")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), "bytes 1000-1999/100000");
    assert_eq!(&r.body[..], &big()[1000..2000]);

    let r = get(a, "/big.bin", &[("range", "bytes=-10")]).await;
    assert_eq!(&r.body[..], &big()[99_990..]);

    let r = get(a, "/big.bin", &[("range", "bytes=200000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), "bytes */100000");

    let r = get(a, "/big.bin", &[("range", "bytes=0-99,50-149")]).await;
    assert_eq!(
        (r.status, r.body.len()),
        (StatusCode::OK, 100_000),
        "overlap: whole file"
    );
    let r = get(a, "/big.bin", &[("range", "lines=1-2")]).await;
    assert_eq!(r.status, 200, "unknown unit ignored");
    srv.shutdown().await;
}

/// Splits a multipart/byteranges body into (Content-Range, data) pairs.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).expect("first delimiter");
    assert_eq!(at, 0, "no preamble");
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            assert_eq!(&body[at..], b"--\r\n", "closing delimiter ends the body");
            return parts;
        }
        assert!(body[at..].starts_with(b"\r\n"));
        let head_end = find(body, b"\r\n\r\n", at).expect("part headers end");
        let head = String::from_utf8(body[at + 2..head_end].to_vec()).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("part has Content-Range")
            .to_owned();
        let data_start = head_end + 4;
        let next =
            find(body, format!("\r\n{delimiter}").as_bytes(), data_start).expect("next delimiter");
        parts.push((range, body[data_start..next].to_vec()));
        at = next + 2;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_are_multipart_byteranges() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let data = big();
    let r = get(
        srv.addr,
        "/big.bin",
        &[("range", "bytes=90000-90099, 0-9, -5")],
    )
    .await;
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart content type");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let parts = parse_multipart(&r.body, boundary);
    assert_eq!(
        parts,
        vec![
            (
                "bytes 90000-90099/100000".to_owned(),
                data[90_000..90_100].to_vec()
            ),
            ("bytes 0-9/100000".to_owned(), data[..10].to_vec()),
            (
                "bytes 99995-99999/100000".to_owned(),
                data[99_995..].to_vec()
            ),
        ]
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains("Content-Type: application/octet-stream\r\n")
    );

    // A small file (answered from memory) the same way.
    let r = get(srv.addr, "/hello.txt", &[("range", "bytes=7-10,0-4")]).await;
    let b = r
        .header("content-type")
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    assert_eq!(
        parse_multipart(&r.body, &b),
        vec![
            ("bytes 7-10/12".to_owned(), b"piha".to_vec()),
            ("bytes 0-4/12".to_owned(), b"hello".to_vec()),
        ]
    );

    // Over HTTP/2 (h2c) the same bytes.
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    let r2 = h2_send(
        stream,
        request("GET", "/big.bin", &[("range", "bytes=0-9,20-29")]),
    )
    .await;
    assert_eq!(
        (r2.status, r2.version),
        (StatusCode::PARTIAL_CONTENT, Version::HTTP_2)
    );
    let b2 = r2
        .header("content-type")
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_owned();
    let parts = parse_multipart(&r2.body, &b2);
    assert_eq!(
        parts[1],
        ("bytes 20-29/100000".to_owned(), data[20..30].to_vec())
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_decides_between_partial_and_full() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let full = get(a, "/hello.txt", &[]).await;
    let etag = full.header("etag").to_owned();
    let lm = full.header("last-modified").to_owned();
    let r = get(
        a,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"hello"[..])
    );
    let r = get(
        a,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, HELLO));
    let r = get(
        a,
        "/hello.txt",
        &[("range", "bytes=0-4,6-9"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, HELLO));
    let r = get(
        a,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", &lm)],
    )
    .await;
    assert_eq!(r.status, 206);
    let weak = format!("W/{etag}");
    let r = get(
        a,
        "/hello.txt",
        &[("range", "bytes=0-4"), ("if-range", &weak)],
    )
    .await;
    assert_eq!(r.status, 200, "a weak tag never matches If-Range");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_variants_by_accept_encoding() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let br = get(a, "/style.css", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.header("content-encoding"), "br");
    assert_eq!(&br.body[..], b"BROTLI-BYTES");
    assert_eq!(br.header("content-type"), "text/css");
    assert_eq!(br.header("vary").to_ascii_lowercase(), "accept-encoding");

    let gz = get(a, "/style.css", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(&gz.body[..], b"GZIP-BYTES");

    let id = get(a, "/style.css", &[]).await;
    assert_eq!(id.header("content-encoding"), "");
    assert_eq!(id.body.len(), 16 * 50);
    assert_eq!(id.header("vary").to_ascii_lowercase(), "accept-encoding");
    let id2 = get(a, "/style.css", &[("accept-encoding", "identity")]).await;
    assert_eq!(id2.header("content-encoding"), "");

    let tags = [br.header("etag"), gz.header("etag"), id.header("etag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    // The identity tag does not validate the brotli answer, and vice versa.
    let r = get(
        a,
        "/style.css",
        &[("accept-encoding", "br"), ("if-none-match", tags[2])],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(
        a,
        "/style.css",
        &[("accept-encoding", "br"), ("if-none-match", tags[0])],
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("vary").to_ascii_lowercase(), "accept-encoding");

    // Ranges apply to the bytes sent, i.e. the compressed file.
    let r = get(
        a,
        "/style.css",
        &[("accept-encoding", "br"), ("range", "bytes=0-5")],
    )
    .await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"BROTLI"[..])
    );
    // No sibling: no Vary, identity even if br is accepted.
    let r = get(a, "/hello.txt", &[("accept-encoding", "br")]).await;
    assert_eq!((r.header("content-encoding"), r.header("vary")), ("", ""));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_headers_of_get_and_no_body() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    for (path, enc) in [
        ("/big.bin", ""),
        ("/style.css", "br"),
        ("/health", ""),
        ("/api/random/int", ""),
    ] {
        let g = get(a, path, &[("accept-encoding", enc)]).await;
        let h = head(a, path, &[("accept-encoding", enc)]).await;
        assert_eq!(h.status, g.status, "{path}");
        assert!(h.body.is_empty());
        for name in ["content-length", "content-type", "etag", "content-encoding"] {
            if name == "content-length" && path.starts_with("/api") {
                continue; // a new random number may be longer or shorter
            }
            assert_eq!(h.header(name), g.header(name), "{path} {name}");
        }
    }
    // On the wire: a HEAD answer carries no body bytes, so the next answer
    // on the same connection starts right after its headers.
    let out = raw(
        a,
        b"HEAD /hello.txt HTTP/1.1\r\nhost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nhello, piha\n"), "{text}");
    assert_eq!(text.matches("hello, piha").count(), 1);

    let stream = TcpStream::connect(a).await.unwrap();
    let h2 = h2_send(stream, request("HEAD", "/big.bin", &[])).await;
    assert_eq!((h2.status, h2.body.len()), (StatusCode::OK, 0));
    assert_eq!(h2.header("content-length"), "100000");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_attempts_never_leak() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let attempts = [
        "/../etc/passwd",
        "/../../../../../../etc/passwd",
        "/docs/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/.%2e/.%2e/etc/passwd",
        "/docs%2F..%2F..%2Fetc%2Fpasswd",
        "/a%2Fb",
        "/docs%2findex.html",
        "/..%5C..%5Cetc%5Cpasswd",
        "/docs\\index.html",
        "/hello.txt%00.png",
        "/%c0%ae%c0%ae/etc/passwd",
        "/leak.txt",
        "/leakdir/secret.txt",
        "/leakdir/",
    ];
    for path in attempts {
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let out = raw(a, req.as_bytes()).await;
        let status = status_of(&out);
        let text = String::from_utf8_lossy(&out);
        assert!(matches!(status, 400 | 404), "{path}: {status}\n{text}");
        assert!(
            !text.contains("TOP SECRET") && !text.contains("root:"),
            "{path} leaked"
        );
    }
    // The same requests through a client library that does not normalise.
    for path in ["/%2e%2e/etc/passwd", "/a%2Fb", "/leak.txt"] {
        let r = get(a, path, &[]).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{path}");
    }
    // With follow_symlinks the operator vouches for the links.
    let mut follow = settings(s.root.path());
    follow.follow_symlinks = true;
    let srv2 = Server::plain(&follow).await;
    let r = get(srv2.addr, "/leak.txt", &[]).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"TOP SECRET"[..])
    );
    // ...but a request still cannot climb out by itself.
    assert_eq!(get(srv2.addr, "/../etc/passwd", &[]).await.status, 400);
    drop(s.outside);
    srv.shutdown().await;
    srv2.shutdown().await;
}

// ---- endpoints -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_random_endpoints() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let a = srv.addr;
    let r = get(a, "/health", &[]).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "ok", "node": "test-node"}),
        "endpoint wins over the file"
    );
    assert_eq!(r.header("cache-control"), "no-store");

    for kind in ["bool", "int", "float", "double"] {
        let r = get(a, &format!("/api/random/{kind}"), &[]).await;
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(r.header("cache-control"), "no-store");
        assert_eq!(r.header("content-type"), "application/json");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["node"], "test-node");
        let value = &v["value"];
        match kind {
            "bool" => assert!(value.is_boolean()),
            "int" => assert!(value.as_i64().is_some_and(|i| i32::try_from(i).is_ok())),
            _ => assert!(
                value.as_f64().is_some_and(|f| (0.0..1.0).contains(&f)),
                "{value}"
            ),
        }
    }
    assert_eq!(get(a, "/api/random/nope", &[]).await.status, 404);
    // Random means random: 20 ints are not all the same.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let r = get(a, "/api/random/int", &[]).await;
        seen.insert(r.body);
    }
    assert!(seen.len() > 1);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_document_root_degrades_files_only() {
    let holder = tempfile::tempdir().unwrap();
    let root = holder.path().join("not-mounted-yet");
    let srv = Server::plain(&settings(&root)).await;
    let a = srv.addr;
    let r = get(a, "/health", &[]).await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert!(v["reason"].as_str().unwrap().contains("does not exist"));
    assert_eq!(get(a, "/index.html", &[]).await.status, 503);
    assert_eq!(get(a, "/api/random/bool", &[]).await.status, 200);
    // The mount appears: no restart needed.
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "up").unwrap();
    assert_eq!(get(a, "/health", &[]).await.status, 200);
    assert_eq!(&get(a, "/", &[]).await.body[..], b"up");
    srv.shutdown().await;
}

// ---- TLS and HTTP/2 ----------------------------------------------------------

fn pem_cert(files: &TlsFiles) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(&files.cert).unwrap()
}

fn client_config(trust: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config_with(trust, alpn, rustls::crypto::ring::default_provider())
}

fn client_config_with(
    trust: &CertificateDer<'static>,
    alpn: &[&[u8]],
    provider: rustls::crypto::CryptoProvider,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    // The self-signed certificate names the node's address: verify by IP.
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(config).connect(name, stream).await
}

fn peer_cert(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

struct TlsSite {
    site: Site,
    data: tempfile::TempDir,
    files: TlsFiles,
    events: Arc<Mutex<Vec<tls::ReloadEvent>>>,
    srv: Server,
}

async fn tls_site(prefer_chacha: Option<bool>) -> TlsSite {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let files = tls::ensure_self_signed(data.path(), "test-node", ip).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let resolver = tls::ReloadingCert::load(files.clone())
        .unwrap()
        .check_every(Duration::ZERO)
        .on_reload(move |e| seen.lock().unwrap().push(e.clone()));
    let config = match prefer_chacha {
        None => tls::server_config(Arc::new(resolver)).unwrap(),
        Some(p) => tls::server_config_for(Arc::new(resolver), p).unwrap(),
    };
    let app = web::router(&settings(site.root.path()), "test-node");
    let srv = Server::start(app, Limits::default(), Some(TlsAcceptor::from(config))).await;
    TlsSite {
        site,
        data,
        files,
        events,
        srv,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_self_signed_certificate_h1_and_h2_by_alpn() {
    let t = tls_site(None).await;
    let cert = pem_cert(&t.files);

    let stream = tls_connect(t.srv.addr, client_config(&cert, &[b"h2", b"http/1.1"]))
        .await
        .expect("handshake trusting the generated certificate");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let r = h2_send(stream, request("GET", "/hello.txt", &[])).await;
    assert_eq!(
        (r.status, r.version, &r.body[..]),
        (StatusCode::OK, Version::HTTP_2, HELLO)
    );

    let stream = tls_connect(t.srv.addr, client_config(&cert, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = h1_send(
        stream,
        request("GET", "/big.bin", &[("range", "bytes=0-9,100-109")]),
    )
    .await;
    assert_eq!(
        (r.status, r.version),
        (StatusCode::PARTIAL_CONTENT, Version::HTTP_11)
    );

    // No ALPN at all: HTTP/1.1.
    let stream = tls_connect(t.srv.addr, client_config(&cert, &[]))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let r = h1_send(stream, request("GET", "/health", &[])).await;
    assert_eq!(r.status, 200);

    // A client that does not trust the certificate fails the handshake.
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        tls::generate_self_signed(other_dir.path(), "x", "127.0.0.1".parse().unwrap()).unwrap();
    assert!(
        tls_connect(t.srv.addr, client_config(&pem_cert(&other), &[]))
            .await
            .is_err()
    );
    drop(t.data);
    drop(t.site);
    t.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge() {
    let s = site();
    let srv = Server::plain(&settings(s.root.path())).await;
    let stream = TcpStream::connect(srv.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Several streams on one connection.
    for path in ["/hello.txt", "/health", "/style.css"] {
        let r = collect(
            sender
                .send_request(request("GET", path, &[]))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (r.status, r.version),
            (StatusCode::OK, Version::HTTP_2),
            "{path}"
        );
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_restart() {
    let t = tls_site(None).await;
    let old = pem_cert(&t.files);
    let s1 = tls_connect(t.srv.addr, client_config(&old, &[]))
        .await
        .unwrap();
    assert_eq!(peer_cert(&s1), old);

    // Replace both files (as a renewal would): the next handshake presents
    // the new certificate, trusted alone.
    tls::generate_self_signed(t.data.path(), "test-node", "127.0.0.1".parse().unwrap()).unwrap();
    let new = pem_cert(&t.files);
    assert_ne!(new, old);
    let s2 = tls_connect(t.srv.addr, client_config(&new, &[]))
        .await
        .unwrap();
    assert_eq!(peer_cert(&s2), new);
    assert!(matches!(
        t.events.lock().unwrap().last(),
        Some(tls::ReloadEvent::Loaded { .. })
    ));

    // A broken certificate file is reported and the last good one is kept.
    std::fs::write(&t.files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let s3 = tls_connect(t.srv.addr, client_config(&new, &[]))
        .await
        .unwrap();
    assert_eq!(peer_cert(&s3), new);
    assert!(matches!(
        t.events.lock().unwrap().last(),
        Some(tls::ReloadEvent::Failed { .. })
    ));
    // The old connection is untouched by all this.
    let r = h1_send(s1, request("GET", "/hello.txt", &[])).await;
    assert_eq!(r.status, 200);
    t.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chacha_first_when_preferred_even_if_the_client_prefers_aes() {
    use rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 as CHACHA;
    for prefer in [true, false] {
        let t = tls_site(Some(prefer)).await;
        let cert = pem_cert(&t.files);
        // ring's own order puts AES-GCM before ChaCha20: a typical client.
        let client = client_config_with(&cert, &[], rustls::crypto::ring::default_provider());
        let s = tls_connect(t.srv.addr, client).await.unwrap();
        let suite = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite == CHACHA, prefer, "prefer_chacha={prefer}: {suite:?}");
        t.srv.shutdown().await;
    }
}

// ---- bounds ----------------------------------------------------------------

fn tight() -> Limits {
    Limits {
        max_connections: 2,
        header_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(400),
        max_header_bytes: 8 * 1024,
        drain_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

/// Waits for the server to close `stream`; returns how long it took.
async fn closed_after(mut stream: TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_slow_clients_are_closed() {
    let s = site();
    let srv = Server::start(web::router(&settings(s.root.path()), "n"), tight(), None).await;
    // Connects and says nothing.
    let silent = TcpStream::connect(srv.addr).await.unwrap();
    let took = closed_after(silent).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Sends half a request head, then stalls (slowloris).
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /hello.txt HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(closed_after(slow).await < Duration::from_secs(2));
    // Keep-alive after a request, then nothing.
    let mut ka = TcpStream::connect(srv.addr).await.unwrap();
    ka.write_all(b"GET /hello.txt HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_after(ka).await < Duration::from_secs(2));
    // h2c connection with no streams.
    let mut h2 = TcpStream::connect(srv.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    assert!(closed_after(h2).await < Duration::from_secs(2));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_and_header_size_bound() {
    let s = site();
    // Long timeouts, so only the cap can close the third connection early.
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..tight()
    };
    let srv = Server::start(web::router(&settings(s.root.path()), "n"), limits, None).await;
    let a = srv.addr;
    let hold1 = TcpStream::connect(a).await.unwrap();
    let hold2 = TcpStream::connect(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = TcpStream::connect(a).await.unwrap();
    assert!(
        closed_after(third).await < Duration::from_secs(2),
        "over the cap: closed at once"
    );
    drop((hold1, hold2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(a, "/hello.txt", &[]).await.status,
        200,
        "slots come back"
    );

    let huge = format!(
        "GET /hello.txt HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let out = raw(a, huge.as_bytes()).await;
    assert!(
        out.is_empty() || status_of(&out) == 431,
        "{}",
        String::from_utf8_lossy(&out)
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_drops_stuck_downloads() {
    let s = site();
    // 20 MB that the client never reads: the response cannot finish.
    let f = std::fs::File::create(s.root.path().join("huge.bin")).unwrap();
    f.set_len(20 << 20).unwrap();
    let srv = Server::start(web::router(&settings(s.root.path()), "n"), tight(), None).await;
    let mut stuck = TcpStream::connect(srv.addr).await.unwrap();
    stuck
        .write_all(b"GET /huge.bin HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    srv.shutdown().await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // New connections are refused once serve has returned.
    let port = stuck.peer_addr().unwrap();
    assert!(TcpStream::connect(port).await.is_err());
}

// ---- access log -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_and_rotation() {
    let s = site();
    let logs = tempfile::tempdir().unwrap();
    let path: PathBuf = logs.path().join("access.log");
    let mut cfg = settings(s.root.path());
    cfg.access_log = AccessLog::File {
        path: path.clone(),
        max_bytes: 1000,
    };
    let srv = Server::plain(&cfg).await;
    let r = get(
        srv.addr,
        "/hello.txt",
        &[("user-agent", "probe/1"), ("referer", "http://ref/")],
    )
    .await;
    assert_eq!(r.status, 200);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&path).contains("/hello.txt") {
        assert!(Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = read(&path);
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /hello.txt HTTP/1.1\" 200 12 \"http://ref/\" \"probe/1\" "),
        "{line}"
    );
    // ~100 bytes a line: 30 requests pass the 1000-byte bound several times.
    for _ in 0..30 {
        get(srv.addr, "/missing", &[]).await;
    }
    let old = logs.path().join("access.log.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !old.exists() {
        assert!(Instant::now() < deadline, "no rotation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 1100);
    assert!(std::fs::metadata(&old).unwrap().len() < 1200);
    assert!(read(&old).contains("\"GET /missing HTTP/1.1\" 404"));
    let files = std::fs::read_dir(logs.path()).unwrap().count();
    assert_eq!(files, 2, "one rotation file only");
    srv.shutdown().await;
}
