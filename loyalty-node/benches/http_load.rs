//! HTTP load benchmark of durable earns: starts a real `loyalty-node` on loopback in a temp
//! directory, drives it with N concurrent clients (each one request at a time, keep-alive),
//! and prints throughput and latency percentiles per client count.
//!
//! `cargo bench --workspace --bench http_load -- [--seconds S] [--clients 1,16,64]
//!  [--batch-clients 1,4,16] [--batch 500]`
//! Prints lines like `node earn clients=16 tps=... p50_ms=... p99_ms=...`, the same shape as
//! `bench/postgres/run.sh`, so `bench/run.sh` can put them side by side. Then the batch path:
//! `--batch-clients` clients each send `POST /v1/earns` with `--batch` earns at a time,
//! printed as `node earn_batch clients=C batch=B tps=<earns/s> p50_ms=... p99_ms=...`
//! (latency per request). `--batch-clients 0` skips it.
//!
//! `--healthz` first measures `GET /healthz` at the same client counts (the HTTP ceiling:
//! no work behind the route), printed as `node healthz clients=C tps=...`.
//! `--heavy-lots N` first sets a ten-year expiry policy (so every earn is a lot of its own)
//! and gives member `heavy` N lots, then keeps one extra client earning for `heavy` during the
//! one-earn rounds, whose lines then end in `heavy_lots=N`: the other members' latency with
//! one member whose history is huge.
//! `--url URL --key KEY` drives a node that is already running (e.g. `scale`'s big log)
//! instead of starting one.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::*;

fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let clients: Vec<usize> = arg("--clients")
        .unwrap_or_else(|| "1,16,64".into())
        .split(',')
        .map(|c| c.parse().expect("--clients takes numbers"))
        .collect();
    let batch_clients: Vec<usize> = arg("--batch-clients")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .map(|c| c.parse().expect("--batch-clients takes numbers"))
        .filter(|&c| c > 0)
        .collect();
    let batch: usize = arg("--batch").and_then(|s| s.parse().ok()).unwrap_or(500);
    let healthz = std::env::args().any(|a| a == "--healthz");
    let heavy_lots: u64 = arg("--heavy-lots")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let bin = env!("CARGO_BIN_EXE_loyalty-node");
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    let (url, key, mut child) = match (arg("--url"), arg("--key")) {
        (Some(url), Some(key)) => (url, key, None),
        _ => {
            let data = dir.path().join("node");
            let port = free_port();
            let out = Command::new(bin)
                .args(["init", "--data"])
                .arg(&data)
                .args(["--brand", "bench", "--listen", &format!("127.0.0.1:{port}")])
                .output()
                .expect("run loyalty-node init");
            assert!(out.status.success());
            let text = String::from_utf8(out.stdout).unwrap();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("admin API key (shown once, stored hashed): "))
                .expect("admin key")
                .trim()
                .to_owned();
            let child = Command::new(bin)
                .args(["run", "--data"])
                .arg(&data)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start the node");
            (format!("http://127.0.0.1:{port}"), key, Some(child))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{url}/readyz")).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
            assert!(Instant::now() < deadline, "node not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if healthz {
            for n in clients.iter().copied() {
                let stop = Instant::now() + Duration::from_secs(seconds);
                let mut tasks = Vec::new();
                for _ in 0..n {
                    let (http, url) = (http.clone(), url.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while Instant::now() < stop {
                            let t0 = Instant::now();
                            if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
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
                println!(
                    "node healthz clients={n} tps={:.0} p50_ms={:.2} p99_ms={:.2}",
                    all.len() as f64 / secs,
                    percentile(&all, 0.50),
                    percentile(&all, 0.99),
                );
            }
        }
        let run_id = std::process::id();
        if heavy_lots > 0 {
            let r = http
                .put(format!("{url}/v1/policy/expiry"))
                .bearer_auth(&key)
                .json(&serde_json::json!({"id": format!("heavy-policy-{run_id}"), "lot_lifetime_ms": 315_360_000_000u64}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            let t0 = Instant::now();
            let mut made = 0u64;
            while made < heavy_lots {
                let n = (heavy_lots - made).min(500);
                let earns: Vec<serde_json::Value> = (made..made + n)
                    .map(|k| serde_json::json!({"member": "heavy", "id": format!("heavy-{run_id}-{k}"), "points": 1}))
                    .collect();
                let r = http
                    .post(format!("{url}/v1/earns"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "earns": earns }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                made += n;
            }
            eprintln!("member heavy has {heavy_lots} lots ({:.1} s)", t0.elapsed().as_secs_f64());
        }
        let suffix = if heavy_lots > 0 { format!(" heavy_lots={heavy_lots}") } else { String::new() };
        for (round, n) in clients.iter().copied().enumerate() {
            let stop = Instant::now() + Duration::from_secs(seconds);
            let key = Arc::new(key.clone());
            let mut tasks = Vec::new();
            if heavy_lots > 0 {
                // The heavy member keeps earning (a new lot each time) beside the others.
                let (http, url, key) = (http.clone(), url.clone(), key.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while Instant::now() < stop {
                        i += 1;
                        let _ = http
                            .post(format!("{url}/v1/members/heavy/earn"))
                            .bearer_auth(key.as_str())
                            .json(&serde_json::json!({"id": format!("hv{run_id}-{round}-{i}"), "points": 1}))
                            .send()
                            .await;
                    }
                });
            }
            for c in 0..n {
                let (http, url, key) = (http.clone(), url.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    let mut i = 0u64;
                    while Instant::now() < stop {
                        i += 1;
                        let member = (c as u64 * 7919 + i * 104_729) % 1_000_000;
                        let t0 = Instant::now();
                        let r = http
                            .post(format!("{url}/v1/members/m{member}/earn"))
                            .bearer_auth(key.as_str())
                            .json(&serde_json::json!({"id": format!("b{run_id}-{round}-{c}-{i}"), "points": 1 + i % 1000}))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => {
                                let _ = r.bytes().await;
                                lat.push(t0.elapsed());
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let t0 = Instant::now();
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await.unwrap();
                all.extend(l);
                errors += e;
            }
            let secs = t0.elapsed().as_secs_f64();
            all.sort();
            println!(
                "node earn clients={n} tps={:.0} p50_ms={:.2} p99_ms={:.2} requests={} errors={errors}{suffix}",
                all.len() as f64 / secs,
                percentile(&all, 0.50),
                percentile(&all, 0.99),
                all.len()
            );
        }
        for (round, n) in batch_clients.iter().copied().enumerate() {
            let stop = Instant::now() + Duration::from_secs(seconds);
            let key = Arc::new(key.clone());
            let mut tasks = Vec::new();
            for c in 0..n {
                let (http, url, key) = (http.clone(), url.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    let mut i = 0u64;
                    while Instant::now() < stop {
                        let earns: Vec<serde_json::Value> = (0..batch as u64)
                            .map(|_| {
                                i += 1;
                                let member = (c as u64 * 7919 + i * 104_729) % 1_000_000;
                                serde_json::json!({"member": format!("m{member}"),
                                    "id": format!("bb{run_id}-{round}-{c}-{i}"), "points": 1 + i % 1000})
                            })
                            .collect();
                        let t0 = Instant::now();
                        let r = http
                            .post(format!("{url}/v1/earns"))
                            .bearer_auth(key.as_str())
                            .json(&serde_json::json!({ "earns": earns }))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                let ok = v["results"].as_array().map_or(0, |a| {
                                    a.iter().filter(|o| o["status"] == "appended").count()
                                });
                                if ok == batch {
                                    lat.push(t0.elapsed());
                                } else {
                                    errors += 1;
                                }
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let t0 = Instant::now();
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await.unwrap();
                all.extend(l);
                errors += e;
            }
            let secs = t0.elapsed().as_secs_f64();
            all.sort();
            println!(
                "node earn_batch clients={n} batch={batch} tps={:.0} p50_ms={:.2} p99_ms={:.2} requests={} errors={errors}",
                (all.len() * batch) as f64 / secs,
                percentile(&all, 0.50),
                percentile(&all, 0.99),
                all.len()
            );
        }
    });
    if let Some(child) = child.as_mut() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}
