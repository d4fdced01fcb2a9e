//! Collection: the node submits its own checkpoints to its witnesses (C2SP tlog-witness
//! `add-checkpoint`), at most once per interval, and keeps the cosignatures that verify
//! with each witness's key (`LogHandle::add_cosignatures`).
//!
//! It runs as its own task, off the decision path: it reads the stored checkpoint and
//! asks the log for consistency proofs on the blocking pool, and a slow or absent
//! witness only delays its own cosignature (each request is bounded by
//! `http::client::TIMEOUT`).

use std::collections::HashMap;
use std::time::Duration;

use hyper::Method;
use silkgate_verify::checkpoint::Checkpoint;
use silkgate_verify::cosignature;
use silkgate_verify::witness::AddCheckpoint;

use super::{Cosigner, WitnessConfig};
use crate::http::client;
use crate::log::LogHandle;

/// Largest witness answer read (a few signature lines).
const MAX_ANSWER: usize = 16 * 1024;

/// Submits the latest stored checkpoint to every witness with a URL, then waits
/// `interval`, forever.
pub async fn run(log: LogHandle, config: WitnessConfig, interval: Duration) {
    // The size each witness last cosigned for this log, as far as this node knows.
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut done: HashMap<String, u64> = HashMap::new();
    loop {
        if let Some((note, cp)) = log.stored_checkpoint() {
            for w in &config.witnesses {
                let Some(url) = &w.url else { continue };
                if done.get(&w.witness.name) == Some(&cp.size) {
                    continue;
                }
                match submit(&log, w, url, &note, &cp, &mut known).await {
                    Ok(()) => {
                        done.insert(w.witness.name.clone(), cp.size);
                    }
                    Err(e) => {
                        tracing::warn!(witness = %w.witness.name, url = %url, size = cp.size, error = %e, "witness did not cosign")
                    }
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Submits `cp` to one witness, learning its known size from a 409 once.
pub async fn submit(
    log: &LogHandle,
    w: &Cosigner,
    url: &str,
    note: &str,
    cp: &Checkpoint,
    known: &mut HashMap<String, u64>,
) -> Result<(), String> {
    // Only the log's own signature goes out (not other witnesses' lines).
    let (body, sigs) = cosignature::split_note(note).map_err(|e| e.to_string())?;
    let own = format!("{body}\n{}\n", sigs.first().copied().unwrap_or_default());
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    for _ in 0..2 {
        let old = known.get(&w.witness.name).copied().unwrap_or(0).min(cp.size);
        let proof = if old == 0 {
            Vec::new()
        } else {
            let l = log.clone();
            let size = cp.size;
            tokio::task::spawn_blocking(move || l.consistency(old, size))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("consistency proof from {old}: {e}"))?
                .1
        };
        let req = AddCheckpoint { old_size: old, proof, note: own.clone() };
        let a = client::request(Method::POST, &endpoint, Some(req.to_body().into_bytes()), MAX_ANSWER).await?;
        match a.status {
            200 => {
                let lines = std::str::from_utf8(&a.body).map_err(|_| "answer is not UTF-8".to_owned())?;
                let report = cosignature::verify(&cosignature::append(&own, lines), std::slice::from_ref(&w.witness))
                    .map_err(|e| e.to_string())?;
                if report.valid.is_empty() {
                    return Err("the answer holds no valid cosignature by this witness".into());
                }
                // Keep only this witness's lines.
                let mine: String = lines
                    .split_terminator('\n')
                    .filter(|l| l.starts_with(&format!("\u{2014} {} ", w.witness.name)))
                    .map(|l| format!("{l}\n"))
                    .collect();
                log.add_cosignatures(cp, &mine);
                known.insert(w.witness.name.clone(), cp.size);
                tracing::debug!(witness = %w.witness.name, size = cp.size, "checkpoint cosigned");
                return Ok(());
            }
            409 if a.content_type.starts_with("text/x.tlog.size") => {
                let text = std::str::from_utf8(&a.body).unwrap_or("");
                let size: u64 = text
                    .trim_end_matches('\n')
                    .parse()
                    .map_err(|_| format!("409 with a bad size `{}`", text.trim()))?;
                if size > cp.size {
                    return Err(format!("the witness knows size {size}, larger than this log's {}", cp.size));
                }
                if known.get(&w.witness.name) == Some(&size) {
                    return Err(format!("409: the witness refuses this checkpoint at its size {size}"));
                }
                known.insert(w.witness.name.clone(), size);
            }
            s => {
                let text = String::from_utf8_lossy(&a.body[..a.body.len().min(256)]).trim().to_owned();
                return Err(format!("HTTP {s}: {text}"));
            }
        }
    }
    Err("the witness's size kept changing".into())
}
