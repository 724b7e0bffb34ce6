//! The cost of a standby (issue 18): durable earns through HTTP, one earn per request, at each
//! client count, side by side on
//! - `single`: a node without `[ha]` (one local synced commit per batch);
//! - `standby`: a primary under `[ha]` with its in-sync standby (per batch: the standby's synced
//!   acknowledgement, one etcd transaction, the local synced commit);
//! - `alone`: the same primary after its standby was killed (the etcd transaction, no standby).
//!
//! `cargo bench -p federation-tests --bench replication -- [--seconds 10] [--clients 1,16,64]`
//! (needs etcd, see `./x setup test`). Prints
//! `node replication mode=M clients=C tps=.. p50_ms=.. p99_ms=.. errors=E`.

use std::time::{Duration, Instant};

use federation_tests::failover::etcd::EtcdCluster;
use federation_tests::failover::pair::Pair;
use federation_tests::harness::{http_client, Node};
use serde_json::json;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Runs `clients` writers against `url` for `secs`; prints one line.
async fn load(mode: &str, url: &str, key: &str, clients: usize, secs: u64, run: usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, key) = (url.to_owned(), key.to_owned());
        let mode = mode.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let t0 = Instant::now();
                let r = http
                    .post(format!("{url}/v1/members/b{run}-{c}/earn"))
                    .bearer_auth(&key)
                    .json(&json!({"id": format!("{mode}-{run}-{c}-{n}"), "points": 5}))
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
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("a load task");
        all.extend(l);
        errors += e;
    }
    all.sort();
    println!(
        "node replication mode={mode} clients={clients} tps={:.0} p50_ms={:.2} p99_ms={:.2} errors={errors}",
        all.len() as f64 / secs as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let clients: Vec<usize> = arg("--clients")
        .unwrap_or_else(|| "1,16,64".into())
        .split(',')
        .filter_map(|c| c.parse().ok())
        .collect();
    let etcd = EtcdCluster::start(3).await;
    let single = Node::start_new("solo", &[]).await;
    let mut pair = Pair::start("air", &etcd.endpoints()).await;
    let primary = pair.wait_in_sync(Duration::from_secs(30)).await;
    let url = pair.nodes[primary].url.clone();
    let key = pair.admin_key.clone();
    for (run, &c) in clients.iter().enumerate() {
        load("single", &single.url, &single.admin_key, c, secs, run).await;
        load("standby", &url, &key, c, secs, run).await;
    }
    // The standby dies: the primary goes on alone (after one batch waits for the timeout).
    pair.nodes[1 - primary].kill9();
    let http = http_client();
    let _ = http
        .post(format!("{url}/v1/members/warm/earn"))
        .bearer_auth(&key)
        .json(&json!({"id": "warm-alone", "points": 1}))
        .send()
        .await;
    for (run, &c) in clients.iter().enumerate() {
        load("alone", &url, &key, c, secs, run + 100).await;
    }
    drop(pair);
    drop(single);
    drop(etcd);
}
