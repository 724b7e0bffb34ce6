//! Scale benchmark: start-up time and memory of a node whose log is large.
//!
//! `cargo bench -p node --bench scale -- [--entries 10000000] [--members 1000000]`
//!
//! Writes a log of `--entries` earns spread over `--members` members directly through
//! `ledger::log::Log` (batches of 4,096, one synced commit and one signed checkpoint each, as
//! the sequencer does), then starts the real `loyalty-node` on it and measures:
//! - the start-up time: from spawning the process to `/readyz` answering 200 (the log is
//!   opened, the stored tree checked against the last checkpoint, every state record loaded);
//! - the memory: the process's resident set (`VmRSS`) and its peak (`VmHWM`) once ready, and
//!   again after 20,000 more earns through HTTP.
//!
//! Prints `scale entries=N members=M write_s=.. startup_s=.. rss_mib=.. hwm_mib=..
//! rss_after_load_mib=.. disk_mib=..`. The log's directory is under `BENCH_DIR` (default `.`)
//! and removed at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::log::{Log, Write};
use ledger::types::{LogTime, Points};

#[path = "common/mod.rs"]
mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_loyalty-node");

/// A `/proc/<pid>/status` field in KiB, as MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn dir_mib(p: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(p) as f64 / (1024.0 * 1024.0)
}

fn main() {
    let entries: u64 = arg("--entries")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let members: u64 = arg("--members")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    assert!(
        members >= 1 && entries >= members,
        "need entries >= members >= 1"
    );
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let data = dir.path().join("node");
    let port = free_port();
    let out = Command::new(BIN)
        .args(["init", "--data"])
        .arg(&data)
        .args(["--brand", "scale", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run loyalty-node init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("admin API key (shown once, stored hashed): "))
        .expect("admin key")
        .trim()
        .to_owned();

    // The log, written directly: every member first earns once (so all of them exist early),
    // then the rest of the entries go round the members.
    let t0 = Instant::now();
    {
        let seed = node::cli::load_seed(&data).unwrap();
        let config = node::config::Config::load(&data).unwrap();
        let signer = NoteSigner::from_seed(&config.origin, &seed).unwrap();
        let mut log = Log::open(&data.join(node::config::DB_DIR), signer).unwrap();
        let start = node::sequencer::now().get() - 30 * 86_400_000;
        let mut i = log.size();
        let mut last_print = Instant::now();
        while i < entries {
            let n = (entries - i).min(4096);
            let writes: Vec<Write> = (i..i + n)
                .map(|k| Write {
                    id: format!("e{k}").parse().unwrap(),
                    kind: EntryKind::Earn(Earn {
                        member: format!("m{}", k % members).parse().unwrap(),
                        points: Points::new(1 + k % 500).unwrap(),
                        qualifying: true,
                    }),
                })
                .collect();
            log.append(&writes, LogTime::new(start + i / 16).unwrap())
                .unwrap();
            i += n;
            if last_print.elapsed() > Duration::from_secs(15) {
                eprintln!(
                    "  {i} of {entries} entries written ({:.0}/s)",
                    i as f64 / t0.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
        }
    }
    let write_s = t0.elapsed().as_secs_f64();
    let disk = dir_mib(&data);
    eprintln!(
        "log of {entries} entries over {members} members written in {write_s:.1} s ({disk:.0} MiB)"
    );

    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let t = Instant::now();
        let child = Kill(
            Command::new(BIN)
                .args(["run", "--data"])
                .arg(&data)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("run loyalty-node"),
        );
        let pid = child.0.id();
        loop {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(1800), "node not ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let startup_s = t.elapsed().as_secs_f64();
        let rss = status_mib(pid, "VmRSS:");
        let hwm = status_mib(pid, "VmHWM:");
        // A check that the node serves the big log: a member from the middle.
        let m: serde_json::Value = http
            .get(format!("{url}/v1/members/m{}", members / 2))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(m["balance"].as_u64().unwrap_or(0) > 0, "{m}");
        // Then some load, spread over the members, in batches of 500.
        for b in 0..40u64 {
            let earns: Vec<serde_json::Value> = (0..500u64)
                .map(|k| {
                    let n = b * 500 + k;
                    serde_json::json!({"member": format!("m{}", (n * 7919) % members),
                                       "id": format!("load-{n}"), "points": 1})
                })
                .collect();
            let r = http
                .post(format!("{url}/v1/earns"))
                .bearer_auth(&key)
                .json(&serde_json::json!({ "earns": earns }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
        let rss_after = status_mib(pid, "VmRSS:");
        println!(
            "scale entries={entries} members={members} write_s={write_s:.1} startup_s={startup_s:.2} \
             rss_mib={rss:.0} hwm_mib={hwm:.0} rss_after_load_mib={rss_after:.0} disk_mib={disk:.0}"
        );
        drop(child);
    });
}
