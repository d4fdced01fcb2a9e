//! Test helpers: what the node's two log formats print for an event, and a check that
//! no `tracing` field in the source is named `log.*`.
//!
//! tracing-subscriber (with its default `tracing-log` feature) takes every field whose
//! name starts with `log.` for metadata of a `log` crate record and skips it in the text
//! format (the JSON format, as `silkgate serve` configures it, keeps them). So a field
//! such as `log.index` silently vanishes from the default log format.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines `emit` logs, formatted as `silkgate serve` formats them (text, or JSON with
/// flattened events), without colour.
pub(crate) fn format_events(json: bool, emit: impl FnOnce()) -> String {
    let buf = Buf::default();
    let out = buf.clone();
    let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(move || out.clone());
    if json {
        tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), emit);
    } else {
        tracing::subscriber::with_default(builder.finish(), emit);
    }
    let bytes = buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `file: name` for every field named `log.*` in a tracing macro under `dir`.
fn log_prefixed_fields(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            log_prefixed_fields(&p, root, out);
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") || p.ends_with("trace_fields.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let shown = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        for (start, _) in text.match_indices('!') {
            let head = &text[..start];
            let mac = head.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
            if !["trace", "debug", "info", "warn", "error", "event", "span", "info_span", "debug_span"].contains(&mac) {
                continue;
            }
            // The macro's arguments: up to the parenthesis that closes the one after `!`.
            let rest = &text[start + 1..];
            let Some(open) = rest.find('(').filter(|&i| rest[..i].trim().is_empty()) else { continue };
            let mut depth = 0;
            let end = rest[open..]
                .char_indices()
                .find(|&(_, c)| {
                    depth += i32::from(c == '(') - i32::from(c == ')');
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| open + i);
            let args = &rest[open..end];
            for (i, _) in args.match_indices("log.") {
                let before = args[..i].chars().next_back().unwrap_or(' ');
                let name: String = args[i..].chars().take_while(|c| c.is_alphanumeric() || "._".contains(*c)).collect();
                let after = args[i + name.len()..].trim_start();
                if !(before.is_alphanumeric() || "._\"".contains(before)) && after.starts_with('=') {
                    out.push(format!("{shown}: {name}"));
                }
            }
        }
    }
}

#[test]
fn log_prefixed_fields_vanish_from_the_text_format() {
    let emit = || tracing::info!(log.index = 7u64, log.path = %"/data/log", entry.index = 8u64, "appended");
    let text = format_events(false, emit);
    assert!(text.contains("appended entry.index=8"), "{text}");
    assert!(!text.contains("log.index") && !text.contains("/data/log"), "{text}");
    let json = format_events(true, emit);
    assert!(json.contains("\"log.index\":7") && json.contains("\"log.path\":\"/data/log\""), "{json}");
}

/// No tracing field is named `log.*` (they were renamed `log_*`).
#[test]
fn no_new_tracing_field_is_named_log_something() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    log_prefixed_fields(&root.join("src"), root, &mut found);
    found.sort();
    assert_eq!(
        found,
        Vec::<String>::new(),
        "tracing fields named `log.*` are dropped by the text log format; rename them"
    );
}
