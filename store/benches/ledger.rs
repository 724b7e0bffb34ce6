//! Benchmark of the ledger alone: append + durable commit + checkpoint in batches, reopen,
//! and full replay. Run with `cargo bench --workspace --bench ledger` (add `-- --quick` for a
//! short run). Prints one line per measurement.

use std::time::Instant;

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::types::{LogTime, Points};
use ledger_store::log::{Log, Outcome, Write};

fn earn(n: u64) -> Write {
    Write {
        id: format!("bench-{n}").parse().unwrap(),
        kind: EntryKind::Earn(Earn {
            member: format!("member-{}", n % 100_000).parse().unwrap(),
            points: Points::new(1 + n % 1000).unwrap(),
            qualifying: true,
        }),
    }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("bench.example/brand", &[1u8; 32]).unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total: u64 = if quick { 20_000 } else { 200_000 };
    println!("ledger benchmark ({} entries per batch size)", total);
    let mut last_dir = None;
    for batch in [1u64, 16, 256, 1024, 4096] {
        let n_total = if batch == 1 { total / 50 } else { total };
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("temp dir");
        let mut log = Log::open(dir.path(), signer()).unwrap();
        let start = Instant::now();
        let mut n = 0;
        let mut time = 1_000_000u64;
        let mut latencies = Vec::new();
        while n < n_total {
            let writes: Vec<Write> = (n..n + batch).map(earn).collect();
            time += 1;
            let t0 = Instant::now();
            let out = log.append(&writes, LogTime::new(time).unwrap()).unwrap();
            latencies.push(t0.elapsed());
            assert!(out.iter().all(|o| matches!(o, Outcome::Appended(_))));
            n += batch;
        }
        let secs = start.elapsed().as_secs_f64();
        latencies.sort();
        let p50 = latencies[latencies.len() / 2];
        let p99 = latencies[latencies.len() * 99 / 100];
        println!(
            "append batch={batch:>5}: {n:>7} entries in {secs:>6.2} s = {:>9.0} entries/s, {:>7.0} commits/s, commit p50 {:.2} ms p99 {:.2} ms",
            n as f64 / secs,
            latencies.len() as f64 / secs,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
        );
        drop(log);
        last_dir = Some(dir);
    }
    let dir = last_dir.unwrap();
    let t0 = Instant::now();
    let log = Log::open(dir.path(), signer()).unwrap();
    println!(
        "open: {} entries, {} members in {:.1} ms (state loaded from records, no replay)",
        log.size(),
        log.state().member_count(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    // The in-memory replay an auditor runs: the entries are read first, then timed alone:
    // decode (with the canonical-form check), apply to a state in memory, hash into a tree.
    let mut entries = Vec::with_capacity(log.size() as usize);
    while (entries.len() as u64) < log.size() {
        let page = log
            .store()
            .entries(entries.len() as u64, log.size())
            .unwrap();
        entries.extend(page);
    }
    let t0 = Instant::now();
    let mut state = ledger::state::State::for_replay();
    let mut tree = ledger::merkle::MemoryTree::new();
    for (i, bytes) in entries.iter().enumerate() {
        let entry = ledger::entry::Entry::from_bytes(bytes).unwrap();
        state
            .apply(ledger::types::LogIndex::new(i as u64).unwrap(), &entry)
            .unwrap();
        tree.push(bytes).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(tree.root().unwrap(), log.checkpoint().root);
    println!(
        "replay: {} entries decoded, applied and re-hashed in {:.2} s = {:.0} entries/s",
        log.size(),
        secs,
        log.size() as f64 / secs
    );
    // Where the replay's time goes: each step alone over the same entries.
    let t0 = Instant::now();
    let decoded: Vec<ledger::entry::Entry> = entries
        .iter()
        .map(|b| ledger::entry::Entry::from_bytes(b).unwrap())
        .collect();
    let decode_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut state = ledger::state::State::for_replay();
    for (i, e) in decoded.iter().enumerate() {
        state
            .apply(ledger::types::LogIndex::new(i as u64).unwrap(), e)
            .unwrap();
    }
    let apply_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut tree = ledger::merkle::MemoryTree::new();
    for b in &entries {
        tree.push(b).unwrap();
    }
    let hash_s = t0.elapsed().as_secs_f64();
    let n = entries.len() as f64;
    println!(
        "replay steps: decode {:.0}/s, apply {:.0}/s, hash {:.0}/s",
        n / decode_s,
        n / apply_s,
        n / hash_s
    );
    // And the log's own audit: replay plus invariants plus a record-for-record comparison
    // with the stored state.
    let t0 = Instant::now();
    log.verify_replay().unwrap();
    println!(
        "verify_replay: {} entries in {:.2} s (replay, invariants, every record compared)",
        log.size(),
        t0.elapsed().as_secs_f64()
    );
}
