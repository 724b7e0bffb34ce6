//! The campaign's checker: one history, nothing acknowledged lost, every write once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ledger::checkpoint::{open_checkpoint, NoteVerifier};
use ledger::merkle::MemoryTree;
use serde_json::Value;

use super::workload::Acked;

/// Entries fetched per request (the node's `ENTRIES_MAX`).
const PAGE: u64 = 1000;

/// The whole log a node serves, up to its checkpoint: (checkpoint note, entries).
pub async fn fetch_log(url: &str) -> Result<(String, Vec<String>), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let note = http
        .get(format!("{url}/checkpoint"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let size: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("no size in {note:?}"))?;
    let mut entries = Vec::with_capacity(size as usize);
    while (entries.len() as u64) < size {
        let start = entries.len() as u64;
        let end = (start + PAGE).min(size);
        let v: Value = http
            .get(format!("{url}/v1/log/entries?start={start}&end={end}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let page = v["entries"]
            .as_array()
            .ok_or_else(|| format!("no entries in {v}"))?;
        if page.is_empty() {
            return Err(format!("{url} served no entries from {start}"));
        }
        for e in page {
            entries.push(e["entry"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok((note, entries))
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub entries: u64,
    pub acknowledged: usize,
    pub notes_checked: usize,
    pub problems: Vec<String>,
}

/// Checks the final log (`entries`, signed by `key`) against everything acknowledged and
/// every checkpoint note observed, and the members' balances (`balances`: member -> balance
/// the node reports).
pub fn check(
    key: &NoteVerifier,
    entries: &[String],
    acked: &[Acked],
    notes: &[String],
    balances: &BTreeMap<String, i64>,
) -> Verdict {
    let mut v = Verdict {
        entries: entries.len() as u64,
        acknowledged: acked.len(),
        ..Verdict::default()
    };
    let mut tree = MemoryTree::new();
    for e in entries {
        tree.push(e.as_bytes()).expect("a tree of this size");
    }
    // 1. Nothing acknowledged is lost or changed.
    for a in acked {
        match entries.get(a.index as usize) {
            Some(e) if *e == a.entry => {}
            Some(_) => v.problems.push(format!(
                "{}: acknowledged at {} but the log holds another entry there",
                a.id, a.index
            )),
            None => v.problems.push(format!(
                "{}: acknowledged at {} but the log has {} entries (lost)",
                a.id,
                a.index,
                entries.len()
            )),
        }
    }
    // 2. Every write once, and only acknowledged ones.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for e in entries {
        if let Ok(j) = serde_json::from_str::<Value>(e) {
            if let Some(id) = j["id"].as_str().filter(|id| id.starts_with('w')) {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let acked_ids: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    for (id, n) in &seen {
        if *n != 1 {
            v.problems.push(format!("{id} is logged {n} times"));
        }
        if !acked_ids.contains(id.as_str()) {
            v.problems
                .push(format!("{id} is logged but was never acknowledged"));
        }
    }
    for id in &acked_ids {
        if !seen.contains_key(*id) {
            v.problems
                .push(format!("{id} was acknowledged but is not logged"));
        }
    }
    // 3. Balances are what was acknowledged.
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for a in acked {
        *expected.entry(a.member.as_str()).or_default() += a.delta;
    }
    for (m, want) in &expected {
        match balances.get(*m) {
            Some(got) if got == want => {}
            got => v.problems.push(format!(
                "{m}: balance {got:?}, acknowledged writes sum to {want}"
            )),
        }
    }
    // 4. One history: every note any node served is signed by the brand and is a prefix of
    //    the final log (same size, same root); two notes of one size with two roots would be a
    //    fork, and at least one of them would fail here.
    let distinct: BTreeSet<&String> = notes.iter().filter(|n| !n.is_empty()).collect();
    for note in distinct {
        v.notes_checked += 1;
        match open_checkpoint(note, key) {
            Err(e) => v
                .problems
                .push(format!("a served note does not verify: {e}")),
            Ok((cp, _)) => {
                if cp.size > entries.len() as u64 {
                    v.problems.push(format!(
                        "a note of size {} was served, beyond the final {} entries",
                        cp.size,
                        entries.len()
                    ));
                } else if cp.size > 0 && tree.root_at(cp.size).ok() != Some(cp.root) {
                    v.problems.push(format!(
                        "FORK: the note of size {} has another root than the final log",
                        cp.size
                    ));
                }
            }
        }
    }
    v
}
