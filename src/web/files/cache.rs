//! What a file lookup found, kept for a second: nginx's `open_file_cache`,
//! bounded. A lookup walks the root and the file with `canonicalize`, stats
//! the precompressed siblings and reads a small file: a few dozen syscalls
//! and a trip to the blocking pool, which measured at less than half of
//! nginx's rate for a 1 KiB file. Within `VALID_FOR` the same request path
//! (with the same acceptable encodings) reuses the result; conditionals and
//! ranges are still decided per request from the cached metadata. A file
//! changed on disk is served as changed at most `VALID_FOR` later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Bytes;

use super::encoding::Accepted;
use super::resolve::{Lookup, RequestPath};

/// How stale an answer may be.
pub const VALID_FOR: Duration = Duration::from_secs(1);
/// Bounds: past either the cache is emptied and refilled by use.
const MAX_ENTRIES: usize = 4096;
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// A lookup's result and, for a small file, its bytes.
#[derive(Debug, Clone)]
pub struct Found {
    pub lookup: Lookup,
    pub data: Option<Bytes>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    path: RequestPath,
    accepted: Accepted,
}

#[derive(Default)]
pub struct LookupCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, (Instant, Found)>,
    bytes: usize,
}

impl LookupCache {
    /// A fresh result for this request, if there is one.
    pub fn get(&self, path: &RequestPath, accepted: &Accepted, now: Instant) -> Option<Found> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = Key {
            path: path.clone(),
            accepted: *accepted,
        };
        let (at, found) = entries.map.get(&key)?;
        (now.saturating_duration_since(*at) < VALID_FOR).then(|| found.clone())
    }

    /// Keeps `found` unless it says nothing lasting (the root is missing).
    pub fn put(&self, path: RequestPath, accepted: Accepted, found: &Found, now: Instant) {
        if matches!(found.lookup, Lookup::RootUnavailable(_)) {
            return;
        }
        let size = found.data.as_ref().map_or(0, Bytes::len);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            entries.map.clear();
            entries.bytes = 0;
        }
        let key = Key { path, accepted };
        if let Some((_, old)) = entries.map.insert(key, (now, found.clone())) {
            entries.bytes -= old.data.as_ref().map_or(0, Bytes::len);
        }
        entries.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> RequestPath {
        RequestPath::parse(raw).unwrap()
    }

    fn found(bytes: usize) -> Found {
        Found {
            lookup: Lookup::NotFound,
            data: Some(Bytes::from(vec![0u8; bytes])),
        }
    }

    #[test]
    fn a_result_is_reused_for_one_second_only() {
        let cache = LookupCache::default();
        let accepted = Accepted::from_headers(&hyper::HeaderMap::new());
        let t0 = Instant::now();
        cache.put(path("/a.html"), accepted, &found(10), t0);
        assert!(
            cache
                .get(&path("/a.html"), &accepted, t0 + Duration::from_millis(999))
                .is_some()
        );
        assert!(
            cache
                .get(&path("/a.html"), &accepted, t0 + VALID_FOR)
                .is_none()
        );
        assert!(cache.get(&path("/b.html"), &accepted, t0).is_none());
    }

    #[test]
    fn an_unavailable_root_is_never_kept() {
        let cache = LookupCache::default();
        let accepted = Accepted::from_headers(&hyper::HeaderMap::new());
        let t0 = Instant::now();
        let gone = Found {
            lookup: Lookup::RootUnavailable("not mounted".into()),
            data: None,
        };
        cache.put(path("/a.html"), accepted, &gone, t0);
        assert!(cache.get(&path("/a.html"), &accepted, t0).is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = LookupCache::default();
        let accepted = Accepted::from_headers(&hyper::HeaderMap::new());
        let t0 = Instant::now();
        for i in 0..100 {
            cache.put(path(&format!("/f{i}")), accepted, &found(1024 * 1024), t0);
        }
        let entries = cache.entries.lock().unwrap();
        assert!(entries.bytes <= MAX_BYTES, "{}", entries.bytes);
        assert!(entries.map.len() <= 32);
    }
}
