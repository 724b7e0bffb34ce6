//! Scale benchmark: start-up time and memory of a node whose log is large.
//!
//! `cargo bench -p loyalty-node --bench scale -- [--entries 10000000] [--members 1000000]`
//!
//! Writes a log of `--entries` earns spread over `--members` members directly through
//! `ledger_store::log::Log` (batches of 4,096, one synced commit and one signed checkpoint each, as
//! the sequencer does), then starts the real `loyalty-node` on it and measures:
//! - the start-up time: from spawning the process to `/readyz` answering 200 (the log is
//!   opened, the stored tree checked against the last checkpoint, every state record loaded);
//! - the memory: the process's resident set (`VmRSS`) and its peak (`VmHWM`) once ready;
//! - durable earns through HTTP on that log: `--clients` (64) clients, one earn per request,
//!   for `--seconds` (15) s, then the batch path (4 clients, 500 earns a request); then both
//!   again driven by `wrk` when it is installed (64 connections; 4 x 500), `bench/wrk/*.lua`;
//! - mixed load for `--load-seconds` (600) s (earns, batches, member reads and history pages
//!   over all members), then the resident set again;
//! - the bytes on disk per entry;
//! - kill -9 under write load (16 clients): restart time, and every acknowledged earn found
//!   after the restart (re-sent, it is answered `existing`; the bench fails otherwise).
//!
//! Prints `scale entries=N members=M write_s=.. settle_s=.. startup_s=.. rss_mib=.. hwm_mib=..
//! earn_tps=.. earn_p50_ms=.. earn_p99_ms=.. batch_tps=.. rss_after_load_mib=.. hwm_after_load_mib=..
//! disk_mib=.. bytes_per_entry=.. .. wrk_earn_tps=.. wrk_batch_tps=..` (the `wrk` rates are 0 without
//! `wrk`). The log's directory is under `BENCH_DIR` (default `.`) and
//! removed at the end; `--keep DIR` writes it in `DIR` and keeps it, and `--reuse DIR` measures
//! a log kept so (skipping the writing; the earns of a run stay in the log).
//!
//! Before measuring, the bench waits until RocksDB has no compaction running or pending (a log
//! just written in bulk compacts for minutes; a node in service has long finished). Then, side
//! by side in the same run, the same earn and batch rounds run on a node with an empty log
//! (`empty_earn_tps`, `empty_batch_tps`, `empty_wrk_earn_tps`, `empty_wrk_batch_tps`) and on
//! the big log.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::types::{LogTime, Points};
use ledger_store::log::{Log, Write};

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

/// `clients` clients each earning one at a time for `seconds` s: (earns/s, p50 ms, p99 ms).
async fn earn_round(
    http: &reqwest::Client,
    url: &str,
    key: &std::sync::Arc<String>,
    members: u64,
    clients: usize,
    seconds: u64,
    tag: &str,
) -> (f64, f64, f64) {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients as u64 {
        let (http, url, key, tag) = (http.clone(), url.to_owned(), key.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < stop {
                i += 1;
                let m = (c * 7919 + i * 104_729) % members;
                let t0 = Instant::now();
                let r = http
                    .post(format!("{url}/v1/members/m{m}/earn"))
                    .bearer_auth(key.as_str())
                    .json(&serde_json::json!({"id": format!("{tag}-{}-{c}-{i}", run_tag()), "points": 1}))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status().is_success() {
                        let _ = r.bytes().await;
                        lat.push(t0.elapsed());
                    }
                }
            }
            lat
        }));
    }
    let t0 = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    all.sort();
    (
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    )
}

/// `clients` clients each sending 500 earns a request for `seconds` s: earns/s.
async fn batch_round(
    http: &reqwest::Client,
    url: &str,
    key: &std::sync::Arc<String>,
    members: u64,
    clients: usize,
    seconds: u64,
) -> f64 {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients as u64 {
        let (http, url, key) = (http.clone(), url.to_owned(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = 0u64;
            while Instant::now() < stop {
                let earns: Vec<serde_json::Value> = (0..500u64)
                    .map(|_| {
                        i += 1;
                        let m = (c * 7919 + i * 104_729) % members;
                        serde_json::json!({"member": format!("m{m}"), "id": format!("bt-{}-{c}-{i}", run_tag()), "points": 1})
                    })
                    .collect();
                let r = http
                    .post(format!("{url}/v1/earns"))
                    .bearer_auth(key.as_str())
                    .json(&serde_json::json!({ "earns": earns }))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status().is_success() {
                        let _ = r.bytes().await;
                        done += 500;
                    }
                }
            }
            done
        }));
    }
    let t0 = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Starts `loyalty-node run` on `data` and waits for `/readyz`: the process, its pid and the
/// time it took to be ready.
async fn start_node(http: &reqwest::Client, data: &Path, url: &str) -> (Kill, u32, Duration) {
    let t = Instant::now();
    let child = Kill(
        Command::new(BIN)
            .args(["run", "--data"])
            .arg(data)
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
    (child, pid, t.elapsed())
}

/// kill -9 of the node (`child`, on `data`) under write load (16 clients, one earn a request),
/// then a restart: every acknowledged earn must be found (re-sent with the same id and body,
/// it is answered `existing`). The restarted node, the earns acknowledged, those lost and the
/// restart's time to `/readyz`.
async fn kill9_round(
    http: &reqwest::Client,
    url: &str,
    key: &std::sync::Arc<String>,
    members: u64,
    mut child: Kill,
    data: &Path,
) -> (Kill, usize, usize, f64) {
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for c in 0..16u64 {
        let (http, url, key, acked) = (http.clone(), url.to_owned(), key.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < stop {
                i += 1;
                let m = (c * 7919 + i * 104_729) % members;
                let id = format!("k9-{}-{c}-{i}", run_tag());
                let r = http
                    .post(format!("{url}/v1/members/m{m}/earn"))
                    .bearer_auth(key.as_str())
                    .json(&serde_json::json!({"id": id, "points": 1}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push((m, id)),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = child.0.kill();
    let _ = child.0.wait();
    for t in tasks {
        let _ = t.await;
    }
    drop(child);
    let (child, _, restart) = start_node(http, data, url).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut lost = 0;
    for (m, id) in &acked {
        let v: serde_json::Value = http
            .post(format!("{url}/v1/members/m{m}/earn"))
            .bearer_auth(key.as_str())
            .json(&serde_json::json!({"id": id, "points": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] != "existing" {
            lost += 1;
        }
    }
    eprintln!(
        "kill -9 under load: {} acknowledged earns checked after restart, {lost} lost",
        acked.len()
    );
    assert_eq!(lost, 0, "an acknowledged earn was lost in a kill -9");
    (child, acked.len(), lost, restart.as_secs_f64())
}

/// The node's rates under `wrk` (the load generator the issue measured single earns with, much
/// lighter than this bench's own), `seconds` each, over `members` members: single earns at 64
/// connections and the batch path at 4 connections of 500 earns (`bench/wrk/earn.lua`), in
/// earns/s. `(0, 0)` when `wrk` is not installed (`bench/run.sh`
/// installs it); a run that fails or answers anything but 2xx stops the bench.
fn wrk_rounds(url: &str, key: &str, members: u64, seconds: u64, tag: &str) -> (f64, f64) {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: its rounds are skipped");
        return (0.0, 0.0);
    }
    let run = |connections: u32, batch: u32| -> f64 {
        let out = Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{connections}"),
                &format!("-d{seconds}s"),
                "-s",
            ])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../bench/wrk/earn.lua"
            ))
            .arg(url)
            .env("KEY", key)
            .env("TAG", format!("{tag}{connections}-{}", run_tag()))
            .env("BATCH", batch.to_string())
            .env("MEMBERS", members.to_string())
            .output()
            .expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains("Non-2xx"),
            "wrk (batch {batch}): {text}"
        );
        text.lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("wrk (batch {batch}) printed no rate: {text}"))
    };
    (run(64, 0), run(4, 500) * 500.0)
}

/// A tag of this run for the ids of every earn it sends: on a reused log, ids of an earlier
/// run would be answered `existing` and write nothing (so the rounds would time idempotent
/// replays, not appends, and the check after the kill would prove nothing).
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms:x}")
    })
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
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(15);
    let load_seconds: u64 = arg("--load-seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let clients: usize = arg("--clients").and_then(|s| s.parse().ok()).unwrap_or(64);
    let keep = arg("--keep");
    let reuse = arg("--reuse");
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let root = match (&keep, &reuse) {
        (Some(d), _) | (None, Some(d)) => Path::new(d).to_path_buf(),
        (None, None) => tmp.path().to_path_buf(),
    };
    let data = root.join("node");
    let key_file = root.join("admin.key");
    // A kept directory that has a key already holds a log: it is reused (`--keep` goes on
    // writing up to `--entries`, `--reuse` writes nothing). `--members` must be the same.
    let key = match std::fs::read_to_string(&key_file) {
        Ok(k) => k.trim().to_owned(),
        Err(_) => {
            assert!(
                reuse.is_none(),
                "--reuse: no log kept in {}",
                root.display()
            );
            std::fs::create_dir_all(&root).expect("the bench directory");
            let key = init(BIN, &data, "scale").admin_key;
            std::fs::write(&key_file, &key).expect("write admin.key");
            key
        }
    };
    // The node's listen address is its configuration's; a reused log keeps its own.
    let port: u16 = node::config::Config::load(&data)
        .expect("the node's config")
        .listen
        .port();

    // The log, written directly: every member first earns once (so all of them exist early),
    // then the rest of the entries go round the members.
    let t0 = Instant::now();
    let (write_s, settle_s);
    let entries = {
        let seed = node::cli::load_seed(&data).unwrap();
        let config = node::config::Config::load(&data).unwrap();
        let signer = NoteSigner::from_seed(&config.origin, &seed).unwrap();
        let mut log = Log::open(&data.join(node::config::DB_DIR), signer).unwrap();
        let start = node::sequencer::now().get() - 30 * 86_400_000;
        let mut i = log.size();
        let mut last_print = Instant::now();
        while reuse.is_none() && i < entries {
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
        write_s = t0.elapsed().as_secs_f64();
        // Compaction settles before anything is measured.
        let t = Instant::now();
        while !log.store().compactions_settled() {
            assert!(
                t.elapsed() < Duration::from_secs(3600),
                "compactions did not settle in an hour"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        settle_s = t.elapsed().as_secs_f64();
        eprintln!("compactions settled in {settle_s:.0} s");
        log.size()
    };
    let disk = dir_mib(&data);
    eprintln!(
        "log of {entries} entries over {members} members written in {write_s:.1} s ({disk:.0} MiB)"
    );

    // The same rounds on an empty log first, side by side.
    let (empty_tps, empty_batch_tps, (empty_wrk_tps, empty_wrk_batch_tps)) = {
        let empty = tmp.path().join("empty");
        let Init { url, admin_key, .. } = init(BIN, &empty, "scale");
        let key = std::sync::Arc::new(admin_key);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = reqwest::Client::new();
            let (child, _, _) = start_node(&http, &empty, &url).await;
            let (tps, _, _) =
                earn_round(&http, &url, &key, members, clients, seconds, "empty").await;
            let batch_tps = batch_round(&http, &url, &key, members, 4, seconds).await;
            let wrk = wrk_rounds(&url, &key, members, seconds, "wrk-empty");
            drop(child);
            (tps, batch_tps, wrk)
        })
    };

    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let (child, pid, startup) = start_node(&http, &data, &url).await;
        let startup_s = startup.as_secs_f64();
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
        let key = std::sync::Arc::new(key);
        // Durable earns on the big log, one per request.
        let (tps, p50, p99) = earn_round(&http, &url, &key, members, clients, seconds, "big").await;
        // The batch path: 4 clients, 500 earns a request.
        let batch_tps = batch_round(&http, &url, &key, members, 4, seconds).await;
        let (wrk_tps, wrk_batch_tps) = wrk_rounds(&url, &key, members, seconds, "wrk-big");
        // Mixed load: earns, batches, member reads and history pages over all members.
        let stop = Instant::now() + Duration::from_secs(load_seconds);
        let mut tasks = Vec::new();
        for c in 0..16u64 {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < stop {
                    i += 1;
                    let m = (c * 7919 + i * 104_729) % members;
                    let req = match i % 4 {
                        0 => http.get(format!("{url}/v1/members/m{m}")),
                        1 => http.get(format!("{url}/v1/members/m{m}/history?limit=100")),
                        _ => http
                            .post(format!("{url}/v1/members/m{m}/earn"))
                            .json(&serde_json::json!({"id": format!("mix-{}-{c}-{i}", run_tag()), "points": 1})),
                    };
                    if let Ok(r) = req.bearer_auth(key.as_str()).send().await {
                        let _ = r.bytes().await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rss_after = status_mib(pid, "VmRSS:");
        let hwm_after = status_mib(pid, "VmHWM:");
        // kill -9 under write load on the big store: every acknowledged earn must be found
        // after the restart.
        let (child, acked, lost, restart_s) = kill9_round(&http, &url, &key, members, child, &data).await;
        println!(
            "scale entries={entries} members={members} write_s={write_s:.1} settle_s={settle_s:.0} \
             startup_s={startup_s:.2} rss_mib={rss:.0} hwm_mib={hwm:.0} earn_tps={tps:.0} earn_p50_ms={p50:.2} \
             earn_p99_ms={p99:.2} batch_tps={batch_tps:.0} rss_after_load_mib={rss_after:.0} \
             hwm_after_load_mib={hwm_after:.0} load_s={load_seconds} disk_mib={disk:.0} \
             bytes_per_entry={:.0} kill9_acked={} kill9_lost={lost} restart_s={restart_s:.2} \
             empty_earn_tps={empty_tps:.0} empty_batch_tps={empty_batch_tps:.0} \
             earn_ratio={:.2} batch_ratio={:.2} wrk_earn_tps={wrk_tps:.0} \
             wrk_batch_tps={wrk_batch_tps:.0} empty_wrk_earn_tps={empty_wrk_tps:.0} \
             empty_wrk_batch_tps={empty_wrk_batch_tps:.0}",
            disk * 1024.0 * 1024.0 / entries as f64,
            acked,
            tps / empty_tps,
            batch_tps / empty_batch_tps,
        );
        drop(child);
    });
}
