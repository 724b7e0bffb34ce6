//! Auditors and mirrors at line rate (issue 16): a partner whose log holds N entries (default
//! one million earns over 100k members) is audited with `loyalty verify`, audited again with
//! `--state` and resumed after R more entries, and caught up by fresh nodes' mirrors, one of
//! them while it takes its own earns.
//!
//! `cargo bench --workspace --bench catchup -- [--entries N] [--members M] [--resume-entries R]
//!   [--seconds S] [--clients C] [--dir DIR] [--only verify,resume,catchup,earns]`
//!
//! Prints, one line each (`key=value`):
//! - `verify entries=N seconds=.. entries_per_s=..`: `loyalty verify` of the whole log (fetch
//!   every entry bundle and checkpoint, check every signature, root and proof, replay in memory);
//! - `verify_state ...`: the same with `--state DIR` (the replayed state in RocksDB);
//! - `resume new=R seconds=..`: `loyalty verify --state DIR` again after R more entries;
//! - `catchup entries=N seconds=.. entries_per_s=..`: a fresh node pins the partner and its
//!   mirror verifies, replays and stores the whole log;
//! - `own_earns clients=C baseline_tps=.. during_catchup_tps=.. ratio=.. catchup_entries_per_s=..`:
//!   another fresh node's durable earns (C HTTP clients) in alternating windows of S seconds
//!   (three of each, in ABBAAB order, so that the machine's drift cancels out): with its mirror
//!   catching up, and with the catch-up paused (the partner stopped with SIGSTOP, so the
//!   mirror gets nothing to do). For this phase the partner's threads run at nice 19: in
//!   production the partner is another machine, and its serving must not count against the
//!   node's earns here.
//!
//! Every process is real and on loopback, sharing the machine: the partner node, the
//! catching-up node, the `loyalty` CLI (beside this bench: `cargo build --release --workspace
//! --bins`, or `LOYALTY_CLI`) and the load generator. The partner's log is written directly
//! through `ledger_store::log::Log` (batches of 4096) before it starts; with `--dir` it is kept and
//! reused by the next run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::types::{LogTime, Points};
use ledger_store::log::{Log, Write};

#[path = "common/mod.rs"]
mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_loyalty-node");

/// The partner's init, kept beside its data so that a kept `--dir` can be reused.
fn init_or_reuse(data: &Path, brand: &str) -> Init {
    let saved = data.with_extension("init");
    if let Ok(text) = std::fs::read_to_string(&saved) {
        let mut l = text.lines().map(str::to_owned);
        return Init {
            url: l.next().unwrap(),
            admin_key: l.next().unwrap(),
            verifier_key: l.next().unwrap(),
        };
    }
    let i = init(BIN, data, brand);
    std::fs::write(
        &saved,
        format!("{}\n{}\n{}\n", i.url, i.admin_key, i.verifier_key),
    )
    .unwrap();
    i
}

fn run(data: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--data"]).arg(data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run loyalty-node")
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} not ready");
}

/// Writes the partner's log up to `entries` earns over `members` members.
fn write_log(data: &Path, entries: u64, members: u64) {
    let seed = node::cli::load_seed(data).unwrap();
    let config = node::config::Config::load(data).unwrap();
    let signer = NoteSigner::from_seed(&config.origin, &seed).unwrap();
    let mut log = Log::open(&data.join(node::config::DB_DIR), signer).unwrap();
    if log.size() >= entries {
        return;
    }
    let t0 = Instant::now();
    let start = node::sequencer::now().get() - 30 * 86_400_000;
    let mut i = log.size();
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
        log.append(&writes, LogTime::new(start + i).unwrap())
            .unwrap();
        i += n;
        if i % 1_048_576 < 4096 {
            eprintln!(
                "  partner log: {i} entries ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "partner log of {entries} entries written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn loyalty_cli() -> Option<PathBuf> {
    std::env::var_os("LOYALTY_CLI")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let profile = exe.parent()?.parent()?;
            Some(profile.join("loyalty"))
        })
        .filter(|p| p.is_file())
}

/// Runs `loyalty verify` against `a` with `extra` arguments; the seconds it took.
fn timed_verify(cli: &Path, a: &Init, extra: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(cli)
        .args([
            "--json",
            "verify",
            "--node",
            &a.url,
            "--log-key",
            &a.verifier_key,
        ])
        .args(extra)
        .output()
        .expect("run loyalty verify");
    let s = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "loyalty verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

/// Adds `n` earns to the node at `url` through the batch path.
async fn add_earns(http: &reqwest::Client, url: &str, key: &str, tag: &str, n: u64) {
    let mut made = 0;
    while made < n {
        let k = (n - made).min(500);
        let earns: Vec<serde_json::Value> = (made..made + k)
            .map(|i| serde_json::json!({"member": format!("r{}", i % 1000), "id": format!("{tag}-{i}"), "points": 1}))
            .collect();
        let r = http
            .post(format!("{url}/v1/earns"))
            .bearer_auth(key)
            .json(&serde_json::json!({ "earns": earns }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        made += k;
    }
}

/// The size of the partner's mirror on the node at `url`.
async fn mirrored(http: &reqwest::Client, url: &str, key: &str) -> u64 {
    let v: serde_json::Value = http
        .get(format!("{url}/v1/partners"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = &v["partners"][0];
    if let Some(e) = p["last_error"].as_str() {
        if p["frozen"].as_bool() == Some(true) {
            panic!("partner frozen: {e}");
        }
    }
    p["verified_size"].as_u64().unwrap_or(0)
}

async fn pin(http: &reqwest::Client, b: &Init, a: &Init) {
    let r = http
        .post(format!("{}/v1/admin/partners", b.url))
        .bearer_auth(&b.admin_key)
        .json(&serde_json::json!({
            "brand": "brand-a", "url": a.url, "verifier_key": a.verifier_key
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

/// `clients` HTTP clients earning one earn per request on `url` for `seconds`: earns/s.
async fn earn_load(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    clients: usize,
    seconds: f64,
    tag: &str,
) -> f64 {
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let key = Arc::new(key.to_owned());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, key, tag) = (http.clone(), url.to_owned(), key.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut i = 0u64;
            while Instant::now() < stop {
                i += 1;
                let member = (c as u64 * 7919 + i * 104_729) % 100_000;
                let r = http
                    .post(format!("{url}/v1/members/m{member}/earn"))
                    .bearer_auth(key.as_str())
                    .json(&serde_json::json!({"id": format!("{tag}-{c}-{i}"), "points": 1}))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status().is_success() {
                        let _ = r.bytes().await;
                        ok += 1;
                    }
                }
            }
            ok
        }));
    }
    let t0 = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Sets the nice value of every thread of process `pid` (Linux: nice is per thread).
fn renice_all(pid: libc::pid_t, nice: i32) {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Some(tid) = t
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<libc::id_t>().ok())
            {
                // SAFETY: setpriority has no memory effects.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
            }
        }
    }
}

fn main() {
    let entries: u64 = arg("--entries")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let members: u64 = arg("--members")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let resume_entries: u64 = arg("--resume-entries")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let clients: usize = arg("--clients").and_then(|s| s.parse().ok()).unwrap_or(16);
    let only = arg("--only").unwrap_or_else(|| "verify,resume,catchup,earns".into());
    let does = |part: &str| only.split(',').any(|p| p == part);
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let dir = arg("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let a_data = dir.join("a");
    let a = init_or_reuse(&a_data, "brand-a");
    write_log(&a_data, entries, members);
    let cli = loyalty_cli();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let a_child = Kill(run(&a_data, &[]));
        let a_pid = a_child.0.id() as libc::pid_t;
        wait_ready(&http, &a.url).await;
        let size: u64 = http
            .get(format!("{}/checkpoint", a.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();

        match &cli {
            None => eprintln!("no loyalty binary beside the bench: verify not measured"),
            Some(cli) => {
                if does("verify") {
                    let s = timed_verify(cli, &a, &[]);
                    println!(
                        "verify entries={size} seconds={s:.2} entries_per_s={:.0}",
                        size as f64 / s
                    );
                }
                if does("resume") {
                    let state = tmp.path().join("audit");
                    let s = timed_verify(cli, &a, &["--state", state.to_str().unwrap()]);
                    println!(
                        "verify_state entries={size} seconds={s:.2} entries_per_s={:.0}",
                        size as f64 / s
                    );
                    let tag = format!("resume-{}", std::process::id());
                    add_earns(&http, &a.url, &a.admin_key, &tag, resume_entries).await;
                    let s = timed_verify(cli, &a, &["--state", state.to_str().unwrap()]);
                    println!("resume new={resume_entries} seconds={s:.3}");
                    let s = timed_verify(cli, &a, &["--state", state.to_str().unwrap()]);
                    println!("resume new=0 seconds={s:.3}");
                }
            }
        }
        let size: u64 = http
            .get(format!("{}/checkpoint", a.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();

        if does("catchup") {
            let b_data = tmp.path().join("b");
            let b = init(BIN, &b_data, "brand-b");
            let _b = Kill(run(&b_data, &[("LOYALTY_SYNC_INTERVAL_MS", "50")]));
            wait_ready(&http, &b.url).await;
            let t = Instant::now();
            pin(&http, &b, &a).await;
            let mut last_print = Instant::now();
            loop {
                let got = mirrored(&http, &b.url, &b.admin_key).await;
                if got >= size {
                    break;
                }
                if last_print.elapsed() > Duration::from_secs(10) {
                    eprintln!(
                        "  {got} entries verified after {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                    last_print = Instant::now();
                }
                assert!(t.elapsed() < Duration::from_secs(7200), "catch-up too slow");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "catchup entries={size} seconds={s:.2} entries_per_s={:.0}",
                size as f64 / s
            );
        }

        if does("earns") {
            let c_data = tmp.path().join("c");
            let c = init(BIN, &c_data, "brand-c");
            let _c = Kill(run(&c_data, &[("LOYALTY_SYNC_INTERVAL_MS", "50")]));
            wait_ready(&http, &c.url).await;
            renice_all(a_pid, 19);
            let warm = earn_load(&http, &c.url, &c.admin_key, clients, 2.0, "warm").await;
            pin(&http, &c, &a).await;
            let t = Instant::now();
            while mirrored(&http, &c.url, &c.admin_key).await == 0 {
                assert!(t.elapsed() < Duration::from_secs(60), "catch-up never started");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A = catching up, B = paused; ABBAAB.
            let (mut base, mut during) = (Vec::new(), Vec::new());
            let (mut caught, mut caught_paused, mut during_s) = (0u64, 0u64, 0.0);
            for (w, catching) in [true, false, false, true, true, false].into_iter().enumerate() {
                // SAFETY: signals to the partner process this bench started.
                unsafe { libc::kill(a_pid, if catching { libc::SIGCONT } else { libc::SIGSTOP }) };
                // Let the chunk in hand be stored (paused), or the pipeline refill (resumed).
                tokio::time::sleep(Duration::from_secs(2)).await;
                let from = mirrored(&http, &c.url, &c.admin_key).await;
                let t = Instant::now();
                let tps = earn_load(&http, &c.url, &c.admin_key, clients, seconds, &format!("w{w}")).await;
                let got = mirrored(&http, &c.url, &c.admin_key).await - from;
                eprintln!("  window {w}: catching up {catching}: {tps:.0} earns/s, {got} entries mirrored");
                if catching {
                    during.push(tps);
                    caught += got;
                    during_s += t.elapsed().as_secs_f64();
                } else {
                    base.push(tps);
                    caught_paused += got;
                }
            }
            // SAFETY: as above.
            unsafe { libc::kill(a_pid, libc::SIGCONT) };
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (baseline, during_tps) = (mean(&base), mean(&during));
            println!(
                "own_earns clients={clients} seconds={seconds} warmup_tps={warm:.0} baseline_tps={baseline:.0} during_catchup_tps={during_tps:.0} ratio={:.3} catchup_entries_per_s={:.0} mirrored_during={caught} mirrored_paused={caught_paused} of={size}",
                during_tps / baseline,
                caught as f64 / during_s
            );
        }
    });
}
