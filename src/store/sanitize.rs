//! Size caps applied in `record*`, on the caller's thread, so one runaway
//! message cannot bloat the queue, the ring, or the card. Oversized input is
//! truncated with a visible marker, never rejected.

use std::io;

use serde_json::{Value, json};

use super::Event;

/// Longest stored message, marker included.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Longest stored details JSON text.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Longest node, component or series name.
pub const MAX_NAME_BYTES: usize = 128;
/// How much of oversized details JSON is kept as a string preview. JSON text
/// re-escaped as a string at most doubles (only `"` and `\` need escaping:
/// control characters are already escaped), so this stays under the cap.
const DETAILS_PREVIEW_BYTES: usize = 6 * 1024;

/// An event ready for the queue: capped fields plus its details as JSON text
/// (serialized once here, not again in the worker).
pub(crate) fn event(mut event: Event) -> (Event, String) {
    cap_text(&mut event.message, MAX_MESSAGE_BYTES);
    cap_text(&mut event.node, MAX_NAME_BYTES);
    cap_text(&mut event.component, MAX_NAME_BYTES);
    let (details, text) = details(event.details);
    event.details = details;
    (event, text)
}

/// Caps a series name.
pub(crate) fn series(name: &str) -> String {
    let mut s = name.to_owned();
    cap_text(&mut s, MAX_NAME_BYTES);
    s
}

/// Truncates `s` to at most `max` bytes on a char boundary, ending with a
/// marker that says how long the original was.
pub(crate) fn cap_text(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let marker = format!("…[truncated, {} bytes]", s.len());
    let keep = floor_char_boundary(s, max.saturating_sub(marker.len()));
    s.truncate(keep);
    if s.len() + marker.len() <= max {
        s.push_str(&marker);
    }
}

/// `str::floor_char_boundary` is not stable on Rust 1.85.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Serializes details with a cap: serialization stops as soon as the cap is
/// passed, so a huge value costs little. Oversized details become an object
/// `{"truncated": true, "limit_bytes": .., "preview": "<start of the JSON>"}`.
fn details(value: Value) -> (Value, String) {
    let mut w = CappedWriter {
        buf: Vec::new(),
        cap: MAX_DETAILS_BYTES,
        overflowed: false,
    };
    match serde_json::to_writer(&mut w, &value) {
        Ok(()) => match String::from_utf8(w.buf) {
            Ok(text) => (value, text),
            Err(_) => (Value::Null, "null".to_owned()),
        },
        Err(_) if w.overflowed => {
            let preview = utf8_prefix(&w.buf, DETAILS_PREVIEW_BYTES);
            let replaced = json!({
                "truncated": true,
                "limit_bytes": MAX_DETAILS_BYTES,
                "preview": preview,
            });
            let text = serde_json::to_string(&replaced).unwrap_or_else(|_| "null".to_owned());
            if text.len() <= MAX_DETAILS_BYTES {
                (replaced, text)
            } else {
                let bare = json!({"truncated": true, "limit_bytes": MAX_DETAILS_BYTES});
                let text = bare.to_string();
                (bare, text)
            }
        }
        // serde_json cannot fail on a Value except through the writer, but a
        // store must not panic on a surprise either.
        Err(_) => (Value::Null, "null".to_owned()),
    }
}

/// The longest valid UTF-8 prefix of `bytes[..max]`.
fn utf8_prefix(bytes: &[u8], max: usize) -> String {
    let slice = &bytes[..bytes.len().min(max)];
    match std::str::from_utf8(slice) {
        Ok(s) => s.to_owned(),
        Err(e) => String::from_utf8_lossy(&slice[..e.valid_up_to()]).into_owned(),
    }
}

/// A writer that refuses to grow past `cap`, so serialization aborts early.
struct CappedWriter {
    /// What was written, never longer than `cap`.
    buf: Vec<u8>,
    cap: usize,
    /// Set when a write was refused, to tell a cap hit from a real error.
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            let room = self.cap - self.buf.len();
            self.buf.extend_from_slice(&data[..room]);
            self.overflowed = true;
            return Err(io::Error::other("details exceed the size cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Severity;

    fn ev(message: String, details: Value) -> Event {
        Event {
            at_ms: 1,
            node: "pi-1".into(),
            component: "test".into(),
            severity: Severity::Info,
            message,
            details,
        }
    }

    #[test]
    fn long_multibyte_message_is_cut_on_a_char_boundary_with_marker() {
        let (e, _) = event(ev("é".repeat(10_000), Value::Null));
        assert!(e.message.len() <= MAX_MESSAGE_BYTES);
        assert!(e.message.starts_with("éé"));
        assert!(
            e.message.ends_with("…[truncated, 20000 bytes]"),
            "{}",
            &e.message[e.message.len() - 40..]
        );
    }

    #[test]
    fn short_input_is_untouched() {
        let details = json!({"a": [1, 2, 3], "b": "x"});
        let (e, text) = event(ev("hello".into(), details.clone()));
        assert_eq!(e.message, "hello");
        assert_eq!(e.details, details);
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(details));
    }

    #[test]
    fn huge_details_become_a_valid_truncation_object_under_the_cap() {
        // Quotes and backslashes double when the JSON text is re-escaped.
        let nasty = "\"\\".repeat(100_000);
        let (e, text) = event(ev("m".into(), json!({ "k": nasty })));
        assert!(text.len() <= MAX_DETAILS_BYTES, "{} bytes", text.len());
        assert_eq!(e.details["truncated"], Value::Bool(true));
        let parsed: Value = serde_json::from_str(&text).expect("stored details are valid JSON");
        assert_eq!(parsed, e.details);
    }

    #[test]
    fn names_are_capped() {
        let mut e = ev("m".into(), Value::Null);
        e.node = "n".repeat(1000);
        e.component = "ü".repeat(1000);
        let (e, _) = event(e);
        assert!(e.node.len() <= MAX_NAME_BYTES);
        assert!(e.component.len() <= MAX_NAME_BYTES);
        assert!(series(&"s".repeat(1000)).len() <= MAX_NAME_BYTES);
    }
}
