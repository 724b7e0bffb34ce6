//! The campaign's workload: concurrent writers, each with its own member, earning and
//! redeeming through the brand's front; every write is retried with the same id until it is
//! acknowledged (the SDK's rule: a retry with the same id is safe), so at the end the set of
//! logged writes must equal the set of acknowledged ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Rng;

/// Longest a single write may take to be acknowledged, retries included, before the campaign
/// fails (service did not resume).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// Time limit of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// An acknowledged write.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    pub member: String,
    /// Points added to the member (negative for a redemption).
    pub delta: i64,
    pub index: u64,
    pub entry: String,
    pub checkpoint: String,
    pub at: Instant,
}

/// What the workers share.
#[derive(Default)]
pub struct Record {
    pub acked: Mutex<Vec<Acked>>,
    /// Every checkpoint note seen (receipts, polls of both nodes).
    pub notes: Mutex<Vec<String>>,
    /// Attempts refused or failed (retried).
    pub retries: std::sync::atomic::AtomicU64,
}

/// One writer: member `m{w}`; runs until `stop`, then finishes its write in flight.
pub async fn worker(
    w: usize,
    seed: u64,
    front: String,
    api_key: String,
    stop: Arc<AtomicBool>,
    record: Arc<Record>,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed ^ ((w as u64 + 1) << 32));
    let member = format!("m{w}");
    let mut balance: i64 = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let id = format!("w{w}-{n}");
        let (path, delta) = if balance >= 20 && rng.below(3) == 0 {
            let p = 1 + rng.below(balance as u64 / 2) as i64;
            ("redeem", -p)
        } else {
            ("earn", 1 + rng.below(100) as i64)
        };
        let url = format!("{front}/v1/members/{member}/{path}");
        let body = json!({"id": id, "points": delta.unsigned_abs()});
        let deadline = Instant::now() + WRITE_DEADLINE;
        let v: Value = loop {
            let r = http
                .post(&url)
                .bearer_auth(&api_key)
                .json(&body)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    if let Ok(v) = r.json::<Value>().await {
                        break v;
                    }
                }
                Ok(r) if r.status().is_client_error() => {
                    let s = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(format!("{id}: {path} refused with {s}: {text}"));
                }
                Ok(r) => {
                    if std::env::var_os("LOYALTY_FAILOVER_DEBUG").is_some() {
                        eprintln!("{id}: HTTP {}", r.status());
                    }
                }
                Err(e) => {
                    if std::env::var_os("LOYALTY_FAILOVER_DEBUG").is_some() {
                        eprintln!("{id}: {e:?}");
                    }
                }
            }
            record.retries.fetch_add(1, Ordering::Relaxed);
            if Instant::now() > deadline {
                return Err(format!(
                    "{id}: not acknowledged within {WRITE_DEADLINE:?} (the service did not resume)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let receipt = &v["receipt"];
        let acked = Acked {
            id: id.clone(),
            member: member.clone(),
            delta,
            index: receipt["index"]
                .as_u64()
                .ok_or_else(|| format!("{id}: no index in {v}"))?,
            entry: receipt["entry"].as_str().unwrap_or_default().to_owned(),
            checkpoint: receipt["checkpoint"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            at: Instant::now(),
        };
        balance += delta;
        record
            .notes
            .lock()
            .expect("notes")
            .push(acked.checkpoint.clone());
        record.acked.lock().expect("acked").push(acked);
    }
    Ok(())
}

/// Polls both nodes' `/checkpoint` every 50 ms until `stop`, keeping every note served.
pub async fn poll_checkpoints(urls: Vec<String>, stop: Arc<AtomicBool>, record: Arc<Record>) {
    let http = reqwest::Client::new();
    let mut last: Vec<String> = vec![String::new(); urls.len()];
    while !stop.load(Ordering::Acquire) {
        for (i, u) in urls.iter().enumerate() {
            let Ok(r) = http
                .get(format!("{u}/checkpoint"))
                .timeout(Duration::from_millis(300))
                .send()
                .await
            else {
                continue;
            };
            if !r.status().is_success() {
                continue;
            }
            if let Ok(t) = r.text().await {
                if t != last[i] && !t.is_empty() {
                    record.notes.lock().expect("notes").push(t.clone());
                    last[i] = t;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
