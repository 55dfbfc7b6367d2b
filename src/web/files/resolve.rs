//! From a request path to a file on disk, refusing everything that could
//! name a file outside the document root.
//!
//! Two stages: `RequestPath::parse` checks the path's text (no IO), and
//! `lookup` walks the file system (blocking, so it runs on tokio's blocking
//! pool). The text rules are stricter than ServeDir's own, so any path we
//! accept names the same file for ServeDir as for us.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::encoding::{Accepted, Encoding};
use super::gluster_client;

/// Why a path was refused before touching the disk (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("encoded slash or backslash in the path")]
    EncodedSeparator,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("NUL or backslash in the path")]
    ForbiddenByte,
    #[error("the path is not UTF-8")]
    NotUtf8,
    #[error("'..' in the path")]
    ParentSegment,
}

/// A request path, decoded and checked: only plain names, no `.`/`..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestPath {
    pub segments: Vec<String>,
    /// `/docs/` asks for the directory's index; `/docs` is redirected there.
    pub trailing_slash: bool,
}

impl RequestPath {
    pub fn parse(raw: &str) -> Result<RequestPath, BadPath> {
        if !raw.starts_with('/') {
            return Err(BadPath::NotAbsolute);
        }
        let decoded = percent_decode(raw)?;
        // NUL cuts C strings short; a backslash is a separator on some file
        // systems (SMB/exFAT exports) and never needed in a URL path.
        if decoded.iter().any(|b| *b == 0 || *b == b'\\') {
            return Err(BadPath::ForbiddenByte);
        }
        let text = String::from_utf8(decoded).map_err(|_| BadPath::NotUtf8)?;
        let mut segments = Vec::new();
        for segment in text.split('/') {
            match segment {
                "" | "." => {}
                // Browsers resolve dot segments before sending; only a
                // hand-made request carries one, so it is refused, not
                // resolved.
                ".." => return Err(BadPath::ParentSegment),
                name => segments.push(name.to_owned()),
            }
        }
        Ok(RequestPath {
            segments,
            trailing_slash: raw.ends_with('/'),
        })
    }
}

/// Decodes `%XX` escapes. Encoded separators are refused outright: after
/// decoding, `/a%2Fb` would be indistinguishable from `/a/b` (and `%5C`
/// from a backslash), which is how traversal filters get bypassed.
fn percent_decode(raw: &str) -> Result<Vec<u8>, BadPath> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::BadEscape)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(BadPath::BadEscape)?;
            if value == b'/' || value == b'\\' {
                return Err(BadPath::EncodedSeparator);
            }
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The file chosen for a request: the original or a precompressed sibling.
#[derive(Debug, Clone)]
pub struct Target {
    /// The file whose bytes are sent.
    pub path: PathBuf,
    pub encoding: Encoding,
    pub size: u64,
    /// Modification time in whole seconds (what Last-Modified can say).
    pub modified: u64,
    /// Strong validator of exactly these bytes.
    pub etag: String,
    /// Some precompressed sibling exists: the answer depends on
    /// Accept-Encoding, so caches must be told (`Vary`).
    pub has_variants: bool,
    /// The original's MIME type (also for a `.br` or `.gz` sibling), by the
    /// same table ServeDir uses.
    pub content_type: &'static str,
}

#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Target),
    /// A directory asked for without the trailing slash.
    Redirect,
    NotFound,
    /// The root itself is missing or unreadable (e.g. the Gluster volume
    /// is not mounted yet), or the file system failed to answer for this
    /// path (EIO, ENOTCONN: a Gluster mount that lost the bricks holding
    /// it): 503, not 404, since the file may well exist.
    RootUnavailable(String),
}

/// Finds the file for `request` under `root`. Blocking.
pub fn lookup(
    root: &Path,
    request: &RequestPath,
    accepted: &Accepted,
    follow_symlinks: bool,
) -> Lookup {
    // Canonical once per request, not cached: the root may be a mount point
    // that comes and goes, or a symlink that is switched on deploy.
    let root_real = match std::fs::canonicalize(root) {
        Ok(p) => p,
        Err(e) => return Lookup::RootUnavailable(format!("{}: {e}", root.display())),
    };
    let mut path = root.to_path_buf();
    path.extend(&request.segments);
    let mut meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => return missing(root, &path, e),
    };
    if meta.is_dir() {
        if !request.trailing_slash {
            return if inside(&path, &root_real, follow_symlinks) {
                Lookup::Redirect
            } else {
                Lookup::NotFound
            };
        }
        path.push("index.html");
        meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return missing(root, &path, e),
        };
    }
    // Only regular files: opening a FIFO or a device would hang or worse.
    if !meta.is_file() || !inside(&path, &root_real, follow_symlinks) {
        return Lookup::NotFound;
    }
    let mut variants = Vec::new();
    for encoding in Encoding::COMPRESSED {
        let sibling = with_suffix(&path, encoding.suffix());
        if let Ok(m) = std::fs::metadata(&sibling) {
            if m.is_file() && inside(&sibling, &root_real, follow_symlinks) {
                variants.push((encoding, sibling, m));
            }
        }
    }
    let has_variants = !variants.is_empty();
    let content_type = mime_guess::from_path(&path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let chosen = accepted
        .choose(std::iter::once(Encoding::Identity).chain(variants.iter().map(|(e, _, _)| *e)));
    let (path, meta) = match variants.into_iter().find(|(e, _, _)| *e == chosen) {
        Some((_, p, m)) => (p, m),
        None => (path, meta),
    };
    Lookup::Found(Target {
        etag: etag(&meta, chosen),
        modified: meta
            .modified()
            .map(crate::web::httpdate::unix_secs)
            .unwrap_or(0),
        size: meta.len(),
        path,
        encoding: chosen,
        has_variants,
        content_type,
    })
}

/// Whether `path` really lies under the root once symlinks are resolved.
/// With `follow_symlinks` the operator has vouched for every link, and the
/// text checks already keep the request itself inside the root.
fn inside(path: &Path, root_real: &Path, follow_symlinks: bool) -> bool {
    follow_symlinks
        || std::fs::canonicalize(path)
            .map(|real| real.starts_with(root_real))
            .unwrap_or(false)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Size, modification time to the nanosecond, and inode: a file replaced by
/// a deploy (new inode) or edited in place (new mtime) gets a new tag. The
/// variant is part of it so that `x.css` and `x.css.br` never share a tag.
fn etag(meta: &std::fs::Metadata, encoding: Encoding) -> String {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tail = match encoding {
        Encoding::Identity => "",
        Encoding::Gzip => "-gz",
        Encoding::Brotli => "-br",
    };
    format!("\"{:x}-{:x}-{:x}{tail}\"", meta.len(), nanos, meta.ino())
}

/// A failed stat: "no such file" only when the file system says so; any
/// other error (the drill saw a Gluster mount reconnecting after a cut
/// link) means it could not look, and a 404 there would be a wrong answer.
/// So is "no such file" while the root itself cannot be listed or a Gluster
/// mount cannot reach a whole replica set (what `/health` answers 503 for):
/// the file may be on the part out of reach. The drill saw 404s for files
/// that exist while a cut node held the only readable copy of their set.
fn missing(root: &Path, path: &Path, e: io::Error) -> Lookup {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::EACCES | libc::ELOOP)
        | None => match serving_problem(root) {
            None => Lookup::NotFound,
            Some(why) => {
                Lookup::RootUnavailable(format!("{}: {e}, and cannot tell: {why}", path.display()))
            }
        },
        Some(_) => Lookup::RootUnavailable(format!("{}: {e}", path.display())),
    }
}

/// Whether every file under the root can be served: the root can be
/// listed and, on a Gluster mount, every part of the volume is in reach.
/// `None` when so, else why. What `/health` answers. Blocking.
pub fn serving_problem(root: &Path) -> Option<String> {
    root_problem(root).or_else(|| gluster_client::problem(root))
}

/// Whether the document root can serve files: `None` when it can, else why.
/// Blocking (a hung network mount blocks here, so call it off the runtime).
pub fn root_problem(root: &Path) -> Option<String> {
    match std::fs::read_dir(root) {
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Some(format!("document root {} does not exist", root.display()))
        }
        Err(e) => Some(format!("document root {}: {e}", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Vec<String>, BadPath> {
        RequestPath::parse(raw).map(|p| p.segments)
    }

    #[test]
    fn plain_paths_decode_to_segments() {
        assert_eq!(parse("/"), Ok(vec![]));
        assert_eq!(parse("/a/b.txt"), Ok(vec!["a".into(), "b.txt".into()]));
        assert_eq!(parse("//a/./b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse("/hello%20world"), Ok(vec!["hello world".into()]));
        assert_eq!(parse("/caf%C3%A9"), Ok(vec!["café".into()]));
        assert!(RequestPath::parse("/docs/").unwrap().trailing_slash);
        assert!(!RequestPath::parse("/docs").unwrap().trailing_slash);
    }

    #[test]
    fn traversal_and_smuggling_are_refused() {
        assert_eq!(parse("/../etc/passwd"), Err(BadPath::ParentSegment));
        assert_eq!(parse("/a/../../etc"), Err(BadPath::ParentSegment));
        assert_eq!(parse("/%2e%2e/etc/passwd"), Err(BadPath::ParentSegment));
        assert_eq!(parse("/.%2E/x"), Err(BadPath::ParentSegment));
        assert_eq!(parse("/a%2Fb"), Err(BadPath::EncodedSeparator));
        assert_eq!(parse("/a%2fb"), Err(BadPath::EncodedSeparator));
        assert_eq!(parse("/..%5Cetc"), Err(BadPath::EncodedSeparator));
        assert_eq!(parse("/a\\b"), Err(BadPath::ForbiddenByte));
        assert_eq!(parse("/a%00.txt"), Err(BadPath::ForbiddenByte));
        assert_eq!(parse("/a%zz"), Err(BadPath::BadEscape));
        assert_eq!(parse("/a%2"), Err(BadPath::BadEscape));
        assert_eq!(parse("/%ff"), Err(BadPath::NotUtf8));
        assert_eq!(parse("*"), Err(BadPath::NotAbsolute));
        assert_eq!(parse("etc/passwd"), Err(BadPath::NotAbsolute));
    }

    fn found(root: &Path, raw: &str, follow: bool) -> Option<Target> {
        let req = RequestPath::parse(raw).ok()?;
        match lookup(root, &req, &Accepted::IDENTITY_ONLY, follow) {
            Lookup::Found(t) => Some(t),
            _ => None,
        }
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_found_unless_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "top secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("ok.txt"), "ok").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, root.path().join(name)).unwrap()
        };
        link(&outside.path().join("secret"), "leak");
        link(outside.path(), "leakdir");
        link(&root.path().join("ok.txt"), "alias.txt");

        assert!(found(root.path(), "/ok.txt", false).is_some());
        assert!(
            found(root.path(), "/alias.txt", false).is_some(),
            "links inside stay"
        );
        assert!(found(root.path(), "/leak", false).is_none());
        assert!(found(root.path(), "/leakdir/secret", false).is_none());
        let req = RequestPath::parse("/leakdir").unwrap();
        assert!(matches!(
            lookup(root.path(), &req, &Accepted::IDENTITY_ONLY, false),
            Lookup::NotFound
        ));
        assert!(found(root.path(), "/leak", true).is_some());
        assert!(found(root.path(), "/leakdir/secret", true).is_some());
    }

    #[test]
    fn only_a_missing_file_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let path = &root.path().join("x");
        let root = root.path();
        let err = |code| io::Error::from_raw_os_error(code);
        assert!(matches!(
            missing(root, path, err(libc::ENOENT)),
            Lookup::NotFound
        ));
        assert!(matches!(
            missing(root, path, err(libc::ENOTDIR)),
            Lookup::NotFound
        ));
        assert!(matches!(
            missing(root, path, err(libc::ENOTCONN)),
            Lookup::RootUnavailable(_)
        ));
        assert!(matches!(
            missing(root, path, err(libc::EIO)),
            Lookup::RootUnavailable(_)
        ));
    }

    #[test]
    fn not_found_is_not_trusted_while_part_of_a_gluster_volume_is_out_of_reach() {
        let root = tempfile::tempdir().unwrap();
        let set = root.path().join(".meta/graphs/active/piha-replicate-1");
        std::fs::create_dir_all(&set).unwrap();
        std::fs::write(
            set.join("private"),
            "child_up[0] = 1\nchild_up[1] = 1\nup = 1\n",
        )
        .unwrap();
        let req = RequestPath::parse("/on-set-2.txt").unwrap();
        let look = || lookup(root.path(), &req, &Accepted::IDENTITY_ONLY, false);
        assert!(matches!(look(), Lookup::NotFound));
        std::fs::write(
            set.join("private"),
            "child_up[0] = 0\nchild_up[1] = 0\nup = 0\n",
        )
        .unwrap();
        match look() {
            Lookup::RootUnavailable(why) => assert!(
                why.contains("cannot tell") && why.contains("piha-replicate-1"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlinked_root_is_fine() {
        let real = tempfile::tempdir().unwrap();
        std::fs::write(real.path().join("a.txt"), "a").unwrap();
        let holder = tempfile::tempdir().unwrap();
        let root = holder.path().join("www");
        std::os::unix::fs::symlink(real.path(), &root).unwrap();
        assert!(found(&root, "/a.txt", false).is_some());
    }

    #[test]
    fn special_files_and_missing_roots() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("pipe");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.map(|s| s.success()).unwrap_or(false) {
            assert!(found(root.path(), "/pipe", false).is_none());
        }
        let gone = root.path().join("nope");
        let req = RequestPath::parse("/x").unwrap();
        assert!(matches!(
            lookup(&gone, &req, &Accepted::IDENTITY_ONLY, false),
            Lookup::RootUnavailable(_)
        ));
        assert!(root_problem(&gone).unwrap().contains("does not exist"));
        assert_eq!(root_problem(root.path()), None);
    }

    #[test]
    fn variants_get_their_own_tags() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("s.css"), "body{}").unwrap();
        std::fs::write(root.path().join("s.css.br"), "BR").unwrap();
        std::fs::write(root.path().join("s.css.gz"), "GZ").unwrap();
        let req = RequestPath::parse("/s.css").unwrap();
        let mut h = hyper::HeaderMap::new();
        h.insert("accept-encoding", "gzip, br".parse().unwrap());
        let Lookup::Found(br) = lookup(root.path(), &req, &Accepted::from_headers(&h), false)
        else {
            panic!("found")
        };
        let plain = found(root.path(), "/s.css", false).unwrap();
        assert_eq!(br.encoding, Encoding::Brotli);
        assert!(br.path.ends_with("s.css.br"));
        assert!(br.has_variants && plain.has_variants);
        assert_ne!(br.etag, plain.etag);
        assert!(plain.etag.starts_with('"') && plain.etag.ends_with('"'));
    }
}
