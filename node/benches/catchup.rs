//! Mirror catch-up benchmark (spec/federation.md §3): a partner whose log holds N entries
//! (default one million earns over 100k members) is pinned by a fresh node, which pulls,
//! verifies (signature, consistency proofs, recomputed roots), replays and stores all of it.
//!
//! `cargo bench --workspace --bench catchup -- [--entries N]`
//! Prints `catchup entries=N seconds=S entries_per_s=R`; then, when the `loyalty` binary is
//! built beside this bench (`cargo build --release --workspace --bins`) or named by
//! `LOYALTY_CLI`, times `loyalty verify` of the partner's whole log (fetch every entry bundle,
//! check every signature and proof, replay every balance and tier) and prints
//! `verify entries=N seconds=S entries_per_s=R`. Both nodes are real `loyalty-node`
//! processes on loopback sharing the machine; the partner's log is written directly through
//! `ledger::log::Log` (batches of 4096) before it starts, so only the catch-up is timed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::log::{Log, Write};
use ledger::types::{LogTime, Points};

#[path = "common/mod.rs"]
mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_loyalty-node");

struct Init {
    url: String,
    admin_key: String,
    verifier_key: String,
}

fn init(data: &Path, brand: &str) -> Init {
    let port = free_port();
    let out = Command::new(BIN)
        .args(["init", "--data"])
        .arg(data)
        .args(["--brand", brand, "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run loyalty-node init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let find = |p: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or_else(|| panic!("init printed no {p}"))
            .trim()
            .to_owned()
    };
    Init {
        url: format!("http://127.0.0.1:{port}"),
        admin_key: find("admin API key (shown once, stored hashed): "),
        verifier_key: find("verifier key: "),
    }
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

fn main() {
    let entries: u64 = arg("--entries")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let a_data = dir.path().join("a");
    let b_data = dir.path().join("b");
    let a = init(&a_data, "brand-a");
    let b = init(&b_data, "brand-b");

    // The partner's log, written directly.
    let t0 = Instant::now();
    {
        let seed = node::cli::load_seed(&a_data).unwrap();
        let config = node::config::Config::load(&a_data).unwrap();
        let signer = NoteSigner::from_seed(&config.origin, &seed).unwrap();
        let mut log = Log::open(&a_data.join(node::config::DB_DIR), signer).unwrap();
        let start = node::sequencer::now().get() - 10 * 86_400_000;
        let mut i = log.size();
        while i < entries {
            let n = (entries - i).min(4096);
            let writes: Vec<Write> = (i..i + n)
                .map(|k| Write {
                    id: format!("e{k}").parse().unwrap(),
                    kind: EntryKind::Earn(Earn {
                        member: format!("m{}", k % 100_000).parse().unwrap(),
                        points: Points::new(1 + k % 500).unwrap(),
                        qualifying: true,
                    }),
                })
                .collect();
            log.append(&writes, LogTime::new(start + i).unwrap())
                .unwrap();
            i += n;
        }
    }
    eprintln!(
        "partner log of {entries} entries written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let _a = Kill(run(&a_data, &[]));
        let _b = Kill(run(&b_data, &[("LOYALTY_SYNC_INTERVAL_MS", "50")]));
        wait_ready(&http, &a.url).await;
        wait_ready(&http, &b.url).await;
        let t = Instant::now();
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
        let mut last_print = Instant::now();
        loop {
            let v: serde_json::Value = http
                .get(format!("{}/v1/partners", b.url))
                .bearer_auth(&b.admin_key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let p = &v["partners"][0];
            let size = p["verified_size"].as_u64().unwrap();
            if let Some(e) = p["last_error"].as_str() {
                if p["frozen"].as_bool() == Some(true) {
                    panic!("partner frozen: {e}");
                }
            }
            if size >= entries {
                break;
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  {size} entries verified after {:.1} s",
                    t.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            assert!(t.elapsed() < Duration::from_secs(1800), "catch-up too slow");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "catchup entries={entries} seconds={s:.2} entries_per_s={:.0}",
            entries as f64 / s
        );
        let cli = std::env::var_os("LOYALTY_CLI")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                let profile = exe.parent()?.parent()?;
                Some(profile.join("loyalty"))
            })
            .filter(|p| p.is_file());
        match cli {
            None => eprintln!("no loyalty binary beside the bench: verify not measured"),
            Some(cli) => {
                let t = Instant::now();
                let out = Command::new(&cli)
                    .args(["verify", "--node", &a.url, "--log-key", &a.verifier_key])
                    .args(["--progress-every", "1000000000"])
                    .output()
                    .expect("run loyalty verify");
                let s = t.elapsed().as_secs_f64();
                assert!(
                    out.status.success(),
                    "loyalty verify failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                println!(
                    "verify entries={entries} seconds={s:.2} entries_per_s={:.0}",
                    entries as f64 / s
                );
            }
        }
    });
}
