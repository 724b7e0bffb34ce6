//! A brand's node survives losing its machine (issue 18): a primary and its standby under a
//! fenced commit point in a three-member etcd, on loopback.
//!
//! - `a_killed_primary_is_replaced_by_its_standby_and_comes_back_as_standby`: the basic story,
//!   with its reads and its refusals.
//! - `failover_campaign`: at least 20 failovers in one run (kill -9 and SIGSTOP of the
//!   primary past its lease, the primary cut from every etcd member, manual switchovers), with
//!   kills of the standby and of etcd members and partitions between primary and standby
//!   between them, under a seeded workload of earns and redemptions; checked: nothing
//!   acknowledged lost, every write once, balances exact, one history (every checkpoint any
//!   node served is a prefix of the final log, and `loyalty verify`'s replay passes on both
//!   nodes), and service resumed within [`RESUME_BOUND`] after each failover.
//!
//! - `api_keys_and_partner_pins_survive_a_failover`: node-local records reach the standby
//!   before they are acknowledged, both ways.
//!
//! `LOYALTY_FAILOVER_SEED` fixes the schedule; `LOYALTY_FAILOVER_ROUNDS` the number of
//! failovers (default 20).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_tests::failover::check::{check, fetch_log};
use federation_tests::failover::etcd::EtcdCluster;
use federation_tests::failover::front::Front;
use federation_tests::failover::pair::{Pair, LEASE_TTL_S};
use federation_tests::failover::workload::{poll_checkpoints, worker, Record};
use federation_tests::failover::Rng;
use federation_tests::harness::{
    bounded, free_port, http_client, metric_value, node_bin, wait_until,
};
use federation_tests::proxy::{Faults, Flow, Proxy};
use ledger::checkpoint::NoteVerifier;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The longest the brand may take to acknowledge a write again after a failover began (the
/// lease's time to live, the takeover, the restore guard, and the front noticing).
const RESUME_BOUND: Duration = Duration::from_secs(12);
/// Workers of the campaign's workload.
const WORKERS: usize = 4;

/// What each of `urls` answers to a status request and to an earn: the state of the brand
/// when a round failed.
async fn probe(http: &reqwest::Client, urls: &[String], key: &str, round: usize) -> String {
    let mut probes = Vec::new();
    for u in urls {
        let st = http
            .get(format!("{u}/v1/ha/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let st = match st {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        let id = format!("probe-{round}-{}", probes.len());
        let w = match try_earn(http, u, key, &id, 1).await {
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e,
        };
        probes.push(format!("{u}: status {st}; earn {w}"));
    }
    probes.join("\n")
}

/// Whether the node at `url` is a standby that says it may not take over because it is not
/// in the in-sync set.
async fn standby_out_of_sync(http: &reqwest::Client, url: &str) -> bool {
    let Ok(r) = http
        .get(format!("{url}/v1/ha/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return false;
    };
    let Ok(v) = r.json::<Value>().await else {
        return false;
    };
    v["role"] == "standby"
        && v["not_eligible"]
            .as_str()
            .is_some_and(|w| w.starts_with("not in the in-sync set"))
}

async fn balances(url: &str, key: &str, members: usize) -> BTreeMap<String, i64> {
    let http = http_client();
    let mut out = BTreeMap::new();
    for w in 0..members {
        let m = format!("m{w}");
        let v: Value = http
            .get(format!("{url}/v1/members/{m}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("member read")
            .json()
            .await
            .expect("member JSON");
        if let Some(b) = v["balance"].as_i64() {
            out.insert(m, b);
        }
    }
    out
}

async fn verify_with_the_cli(url: &str, key: &str) -> Result<Value, String> {
    let bin = node_bin().with_file_name("loyalty");
    let out = tokio::process::Command::new(&bin)
        .args(["--node", url, "--json", "verify", "--log-key", key])
        .output()
        .await
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "loyalty verify at {url}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Waits until both nodes serve the same checkpoint (the standby applied everything).
async fn wait_same_checkpoint(pair: &Pair) -> String {
    let http = http_client();
    wait_until(
        "both nodes serve one checkpoint",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            async move {
                let mut notes = Vec::new();
                for n in &pair.nodes {
                    let t = http
                        .get(format!("{}/checkpoint", n.url))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .text()
                        .await
                        .map_err(|e| e.to_string())?;
                    notes.push(t);
                }
                if notes[0] == notes[1] {
                    Ok(notes[0].clone())
                } else {
                    Err(format!(
                        "{:?} vs {:?}",
                        notes[0].lines().nth(1),
                        notes[1].lines().nth(1)
                    ))
                }
            }
        },
    )
    .await
}

async fn try_earn(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: &str,
    points: u64,
) -> Result<reqwest::Response, String> {
    http.post(format!("{url}/v1/members/m0/earn"))
        .bearer_auth(key)
        .json(&json!({"id": id, "points": points}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())
}

async fn earn(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: &str,
    points: u64,
) -> reqwest::Response {
    try_earn(http, url, key, id, points)
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_is_replaced_by_its_standby_and_comes_back_as_standby() {
    bounded(Duration::from_secs(180), "the basic failover", async {
        let etcd = EtcdCluster::start(3).await;
        let mut pair = Pair::start("air", &etcd.endpoints()).await;
        let http = http_client();
        let key = pair.admin_key.clone();
        let (a, b) = (pair.nodes[0].url.clone(), pair.nodes[1].url.clone());
        for i in 0..5 {
            let r = earn(&http, &a, &key, &format!("e{i}"), 10).await;
            assert!(r.status().is_success(), "earn {i}: {}", r.status());
        }
        // The standby serves reads and tiles, refuses writes with a retryable error.
        pair.wait_in_sync(Duration::from_secs(20)).await;
        // A batch larger than a request body may be (500 earns, about 90 KB shipped) is
        // replicated too: the standby stays in sync, nothing is committed alone.
        let earns: Vec<Value> = (0..500)
            .map(|i| {
                json!({
                    "member": format!("bulk-member-0000000000-{}", i % 7),
                    "id": format!("bulk-write-0000000000-{i:04}"),
                    "points": 1
                })
            })
            .collect();
        let r = http
            .post(format!("{a}/v1/earns"))
            .bearer_auth(&key)
            .json(&json!({ "earns": earns }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let st = pair.nodes[0]
            .status(&http, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(st["batches_alone"], 0, "{st}");
        assert_eq!(st["in_sync"].as_array().map(Vec::len), Some(2), "{st}");
        // (What was shipped is larger than the node's 64 KiB request body limit.)
        let mut shipped = 0;
        for start in [5u64, 505] {
            let end = (start + 500).min(505);
            if start >= end {
                continue;
            }
            let v: Value = http
                .get(format!("{a}/v1/log/entries?start={start}&end={end}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for e in v["entries"].as_array().unwrap() {
                shipped += serde_json::to_string(&e["entry"]).unwrap().len();
            }
        }
        assert!(shipped > 64 * 1024, "only {shipped} bytes shipped");
        let text = http
            .get(format!("{a}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let replicated = metric_value(&text, "loyalty_ha_batches_total", &[("with", "standby")]);
        assert!(replicated >= Some(1.0), "{text}");
        assert_eq!(
            metric_value(&text, "loyalty_ha_standby_in_sync", &[]),
            Some(1.0)
        );
        assert!(text.contains("loyalty_ha_commit_point_duration_seconds_count"));
        wait_same_checkpoint(&pair).await;
        let r = earn(&http, &b, &key, "at-standby", 1).await;
        assert_eq!(r.status().as_u16(), 503);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "not_ready");
        let m: Value = http
            .get(format!("{b}/v1/members/m0"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["balance"], 50, "{m}");
        let tile = http
            .get(format!("{b}/tile/0/000.p/5"))
            .send()
            .await
            .unwrap();
        assert_eq!(tile.status().as_u16(), 200);

        // kill -9 of the primary: the standby takes over within the bound.
        let t0 = Instant::now();
        pair.nodes[0].kill9();
        let resumed = wait_until("the standby leads", RESUME_BOUND, || {
            let http = http.clone();
            let (b, key) = (b.clone(), key.clone());
            async move {
                let r = try_earn(&http, &b, &key, "after-kill", 7).await?;
                if r.status().is_success() {
                    Ok(r.json::<Value>().await.map_err(|e| e.to_string())?)
                } else {
                    Err(format!("HTTP {}", r.status()))
                }
            }
        })
        .await;
        assert_eq!(resumed["receipt"]["index"], 505, "{resumed}");
        eprintln!("resumed {:?} after the kill", t0.elapsed());
        // The old primary comes back as the standby, catches up and rejoins the in-sync set.
        pair.nodes[0].start();
        pair.wait_role(0, "standby", Duration::from_secs(30)).await;
        let primary = pair.wait_in_sync(Duration::from_secs(30)).await;
        assert_eq!(primary, 1);
        let r = earn(&http, &b, &key, "after-rejoin", 3).await;
        assert!(r.status().is_success());
        let note = wait_same_checkpoint(&pair).await;
        assert!(note.lines().nth(1) == Some("507"), "{note}");
        for url in [&a, &b] {
            let v = verify_with_the_cli(url, &pair.verifier_key).await.unwrap();
            assert_eq!(v["entries"], 507, "{v}");
        }
        drop(etcd);
    })
    .await;
}

/// Creates an API key on `url` (with the admin `key`); its id and secret.
async fn create_key(http: &reqwest::Client, url: &str, key: &str, name: &str) -> (String, String) {
    let v: Value = http
        .post(format!("{url}/v1/admin/keys"))
        .bearer_auth(key)
        .json(&json!({"name": name, "scopes": ["read", "earn"]}))
        .send()
        .await
        .expect("POST /v1/admin/keys")
        .json()
        .await
        .expect("a created key");
    (
        v["key_id"].as_str().expect("key_id").to_owned(),
        v["key"].as_str().expect("key").to_owned(),
    )
}

/// The brands `url` lists as partners.
async fn partner_brands(http: &reqwest::Client, url: &str, key: &str) -> Vec<String> {
    let v: Value = http
        .get(format!("{url}/v1/partners"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /v1/partners")
        .json()
        .await
        .expect("partners JSON");
    v["partners"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["brand"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `url` leads and accepts an earn with `key`.
async fn wait_leads_with(http: &reqwest::Client, url: &str, key: &str, id: &str) {
    wait_until("the standby leads", RESUME_BOUND, || {
        let (http, url, key) = (http.clone(), url.to_owned(), key.to_owned());
        let id = id.to_owned();
        async move {
            let r = try_earn(&http, &url, &key, &id, 1).await?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", r.status()))
            }
        }
    })
    .await;
}

/// Node-local records (API keys, their revocation, partner pins) written on the primary are
/// on the standby before they are acknowledged: the primary is killed right after the
/// answers, and the standby that takes over accepts the key, refuses the revoked one and
/// knows the partner. The old primary comes back as the standby, is copied the records of
/// the new generation, and a key created then survives a second failover the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_and_partner_pins_survive_a_failover() {
    use federation_tests::harness::{Node, FAST_FEDERATION};
    bounded(Duration::from_secs(180), "node-local records", async {
        let etcd = EtcdCluster::start(1).await;
        let mut pair = Pair::start("air", &etcd.endpoints()).await;
        let coffee = Node::start_new("coffee", FAST_FEDERATION).await;
        let http = http_client();
        let admin = pair.admin_key.clone();
        let (a, b) = (pair.nodes[0].url.clone(), pair.nodes[1].url.clone());
        assert_eq!(pair.wait_in_sync(Duration::from_secs(30)).await, 0);

        let (_, app) = create_key(&http, &a, &admin, "app").await;
        let (old_id, old) = create_key(&http, &a, &admin, "old").await;
        let r = http
            .delete(format!("{a}/v1/admin/keys/{old_id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "revoke: {}", r.status());
        let r = http
            .post(format!("{a}/v1/admin/partners"))
            .bearer_auth(&admin)
            .json(
                &json!({"brand": "coffee", "url": coffee.url, "verifier_key": coffee.verifier_key}),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "pin coffee: {}", r.status());
        let st = pair.nodes[0]
            .status(&http, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            st["local"]["released"].as_u64() >= Some(3),
            "the key, its revocation and the pin were journaled and released: {st}"
        );

        // The standby's reads know the new key, and no longer the revoked one.
        let read = |key: String| {
            let (http, b) = (http.clone(), b.clone());
            async move {
                http.get(format!("{b}/v1/policy"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(read(app.clone()).await, 200, "the new key on the standby");
        assert_eq!(
            read(old.clone()).await,
            401,
            "the revoked key on the standby"
        );
        // kill -9 right after the answers: the standby takes over with the records.
        pair.nodes[0].kill9();
        wait_leads_with(&http, &b, &app, "with-app-key").await;
        let r = earn(&http, &b, &old, "with-revoked-key", 1).await;
        assert_eq!(r.status().as_u16(), 401, "the revoked key is refused");
        assert_eq!(partner_brands(&http, &b, &admin).await, vec!["coffee"]);

        // The old primary follows the new one: a copy of the new generation's records, then
        // in sync; a key created now survives a failover back.
        pair.nodes[0].start();
        pair.wait_role(0, "standby", Duration::from_secs(30)).await;
        assert_eq!(pair.wait_in_sync(Duration::from_secs(30)).await, 1);
        let (_, later) = create_key(&http, &b, &admin, "later").await;
        pair.nodes[1].kill9();
        wait_leads_with(&http, &a, &later, "with-later-key").await;
        let r = earn(&http, &a, &app, "with-app-key-again", 1).await;
        assert!(r.status().is_success(), "{}", r.status());
        let r = earn(&http, &a, &old, "with-revoked-key-again", 1).await;
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(partner_brands(&http, &a, &admin).await, vec!["coffee"]);
        drop(coffee);
        drop(etcd);
    })
    .await;
}

fn seed() -> u64 {
    std::env::var("LOYALTY_FAILOVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillPrimary,
    PausePrimary,
    PartitionPrimaryFromEtcd,
    Switchover,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_campaign() {
    let seed = seed();
    let rounds: usize = std::env::var("LOYALTY_FAILOVER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("failover campaign: seed {seed}, {rounds} failovers");
    bounded(Duration::from_secs(600), &format!("the failover campaign (seed {seed})"), async {
        let mut rng = Rng::new(seed);
        let mut etcd = EtcdCluster::start(3).await;
        // Every path between the nodes, and from each node to each etcd member, goes through
        // a proxy of its own, so that partitions are per pair.
        let ports = [free_port(), free_port()];
        let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
        let peer = [
            Proxy::start(addr(ports[1])).await.unwrap(),
            Proxy::start(addr(ports[0])).await.unwrap(),
        ];
        let mut to_etcd: Vec<Vec<Proxy>> = Vec::new();
        for _ in 0..2 {
            let mut v = Vec::new();
            for e in etcd.endpoints() {
                let a: SocketAddr = e.trim_start_matches("http://").parse().unwrap();
                v.push(Proxy::start(a).await.unwrap());
            }
            to_etcd.push(v);
        }
        let endpoints = |i: usize| -> Vec<String> { to_etcd[i].iter().map(|p| p.url()).collect() };
        let mut pair = Pair::start_with(
            "air",
            ports,
            [endpoints(0), endpoints(1)],
            [peer[0].url(), peer[1].url()],
        )
        .await;
        let front = Front::start(pair.nodes.iter().map(|n| n.url.clone()).collect()).await;
        let key = pair.admin_key.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Record::default());
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            workers.push(tokio::spawn(worker(
                w,
                seed,
                front.url(),
                key.clone(),
                stop.clone(),
                record.clone(),
            )));
        }
        let poller = tokio::spawn(poll_checkpoints(
            pair.nodes.iter().map(|n| n.url.clone()).collect(),
            stop.clone(),
            record.clone(),
        ));
        let http = http_client();
        let mut resume_times = Vec::new();
        let mut faults = BTreeMap::<String, usize>::new();
        let started = Instant::now();
        let mut failovers = 0;
        let mut round = 0;
        while failovers < rounds {
            assert!(
                round < 3 * rounds,
                "seed {seed}: only {failovers} failovers in {round} rounds\n{}",
                pair.logs()
            );
            round += 1;
            pair.wait_in_sync(Duration::from_secs(30)).await;
            // Between failovers, a fault that must not cost a failover: an etcd member, or the
            // standby, killed and brought back.
            if round % 4 == 3 {
                let m = rng.below(etcd.len() as u64) as usize;
                etcd.kill9(m);
                tokio::time::sleep(Duration::from_millis(800)).await;
                etcd.restart(m).await;
                *faults.entry("kill -9 etcd member".into()).or_default() += 1;
            }
            let leader = pair.wait_in_sync(Duration::from_secs(30)).await;
            if round % 5 == 4 {
                let s = 1 - leader;
                pair.nodes[s].kill9();
                tokio::time::sleep(Duration::from_millis(500)).await;
                pair.nodes[s].start();
                *faults.entry("kill -9 standby".into()).or_default() += 1;
            }
            pair.wait_in_sync(Duration::from_secs(30)).await;
            // A partition between primary and standby: the primary drops the standby from the
            // in-sync set and goes on alone; healed, the standby catches up and rejoins.
            //
            // Every seventh round the partition stays, and the fault that follows cuts the
            // primary from etcd as well: the standby, out of sync, must not take over (it may
            // lack acknowledged writes), and the brand resumes on the old primary once it
            // reaches etcd again.
            let double = round % 7 == 6;
            let alone_primary = if round % 3 == 2 || double {
                for p in &peer {
                    p.set(Faults::both(Flow::Cut));
                }
                let (i, alone) = wait_until("the primary goes on alone", Duration::from_secs(10), || {
                    let http = http.clone();
                    let pair = &pair;
                    async move {
                        match pair.primary(&http).await {
                            Some((i, s))
                                if s["in_sync"].as_array().is_some_and(|a| a.len() == 1)
                                    && s["batches_alone"].as_u64() > Some(0) =>
                            {
                                Ok((i, s))
                            }
                            s => Err(format!("{s:?}")),
                        }
                    }
                })
                .await;
                assert_eq!(alone["fenced"], Value::Null, "{alone}");
                if !double {
                    for p in &peer {
                        p.heal();
                    }
                    *faults.entry("partition primary/standby".into()).or_default() += 1;
                }
                Some(i)
            } else {
                None
            };
            let leader = match alone_primary {
                Some(i) if double => i,
                _ => pair.wait_in_sync(Duration::from_secs(30)).await,
            };
            let fault = match rng.below(4) {
                _ if double => Fault::PartitionPrimaryFromEtcd,
                0 => Fault::KillPrimary,
                1 => Fault::PausePrimary,
                2 => Fault::PartitionPrimaryFromEtcd,
                _ => Fault::Switchover,
            };
            *faults.entry(format!("{fault:?}")).or_default() += 1;
            let acked_before = record.acked.lock().unwrap().len();
            let t0 = Instant::now();
            match fault {
                Fault::KillPrimary => pair.nodes[leader].kill9(),
                Fault::PausePrimary => pair.nodes[leader].pause(),
                Fault::PartitionPrimaryFromEtcd => {
                    for p in &to_etcd[leader] {
                        p.set(Faults::both(Flow::Cut));
                    }
                }
                Fault::Switchover => {
                    let out = tokio::process::Command::new(node_bin())
                        .args(["promote", "--data"])
                        .arg(&pair.nodes[1 - leader].data)
                        .args(["--wait-s", "20"])
                        .output()
                        .await
                        .expect("run promote");
                    assert!(
                        out.status.success(),
                        "seed {seed}: promote failed: {}\n{}",
                        String::from_utf8_lossy(&out.stderr),
                        pair.logs()
                    );
                }
            }
            // A write is acknowledged after the fault began, normally by the other node (a
            // failover); the old primary is restarted a second after a kill, as a supervisor
            // would.
            let deadline = t0 + RESUME_BOUND;
            let mut cut_from_etcd = fault == Fault::PartitionPrimaryFromEtcd;
            // Writes acknowledged after this instant show that the service resumed.
            let mut since = t0;
            let (resumed, new_leader) = loop {
                pair.supervise();
                // A standby that left the in-sync set just before the fault may not take
                // over (it may lack acknowledged writes): the brand is unavailable until the
                // old primary reaches the coordination store again, by design. The partition
                // is healed once the standby says so, and the old primary must resume.
                if cut_from_etcd
                    && t0.elapsed() > Duration::from_secs(LEASE_TTL_S)
                    && standby_out_of_sync(&http, &pair.nodes[1 - leader].url).await
                {
                    for p in &to_etcd[leader] {
                        p.heal();
                    }
                    cut_from_etcd = false;
                    since = Instant::now();
                    *faults
                        .entry("PartitionPrimaryFromEtcd healed: the standby was out of sync".into())
                        .or_default() += 1;
                }
                if !pair.nodes[leader].is_running() && t0.elapsed() > Duration::from_secs(1) {
                    pair.nodes[leader].start();
                }
                if fault == Fault::PausePrimary && t0.elapsed() > Duration::from_secs(LEASE_TTL_S + 2) && pair.nodes[leader].paused {
                    pair.nodes[leader].resume();
                }
                let new_leader = pair.primary(&http).await.map(|(i, _)| i);
                let acked_after = record
                    .acked
                    .lock()
                    .unwrap()
                    .iter()
                    .skip(acked_before)
                    .any(|a| a.at > since);
                if let (Some(l), true) = (new_leader, acked_after && !(double && cut_from_etcd)) {
                    // The same node may lead again only when its standby was not in sync at
                    // the fault's instant (it may not take over); counted apart below.
                    if l != leader || fault != Fault::Switchover {
                        break (t0.elapsed(), l);
                    }
                }
                if let Some(i) = workers.iter().position(|w| w.is_finished()) {
                    let r = workers.remove(i).await.expect("worker task");
                    panic!("seed {seed}: round {round}: a worker stopped: {r:?}\n{}", pair.logs());
                }
                if Instant::now() >= deadline {
                    let urls = [front.url(), pair.nodes[0].url.clone(), pair.nodes[1].url.clone()];
                    panic!(
                        "seed {seed}: round {round} ({fault:?}): service not resumed within {RESUME_BOUND:?} (leader {new_leader:?})\n{}\n{}",
                        probe(&http, &urls, &key, round).await,
                        pair.logs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            for p in &to_etcd[leader] {
                p.heal();
            }
            if double {
                assert_eq!(
                    new_leader, leader,
                    "seed {seed}: round {round}: a standby out of sync took over\n{}",
                    pair.logs()
                );
                for p in &peer {
                    p.heal();
                }
                *faults
                    .entry("partition primary/standby, then the primary from etcd".into())
                    .or_default() += 1;
            }
            resume_times.push(resumed);
            if new_leader != leader {
                failovers += 1;
            } else {
                *faults
                    .entry(format!("{fault:?} with the standby out of sync: the old primary resumed"))
                    .or_default() += 1;
            }
            if pair.nodes[leader].paused {
                pair.nodes[leader].resume();
            }
            // The old primary was killed, or exits by itself (fenced, or handed over); the
            // supervisor brings it back (in `wait_in_sync` of the next round).
            if !pair.nodes[leader].is_running() {
                pair.nodes[leader].start();
            }
        }
        let failover_time = started.elapsed();
        pair.wait_in_sync(Duration::from_secs(30)).await;
        stop.store(true, Ordering::Release);
        for w in workers {
            w.await.expect("worker task").unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", pair.logs()));
        }
        poller.await.expect("poller");
        let final_note = wait_same_checkpoint(&pair).await;
        let primary = pair.wait_in_sync(Duration::from_secs(30)).await;
        let url = pair.nodes[primary].url.clone();
        let (note, entries) = fetch_log(&url).await.expect("the final log");
        assert_eq!(note, final_note);
        let key_v = NoteVerifier::parse(&pair.verifier_key).unwrap();
        let acked = record.acked.lock().unwrap().clone();
        let mut notes = record.notes.lock().unwrap().clone();
        notes.push(note.clone());
        let verdict = check(&key_v, &entries, &acked, &notes, &balances(&url, &key, WORKERS).await);
        for n in &pair.nodes {
            let v = verify_with_the_cli(&n.url, &pair.verifier_key)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(v["entries"].as_u64(), Some(entries.len() as u64), "{v}");
        }
        let max = resume_times.iter().max().copied().unwrap_or_default();
        let mut sorted = resume_times.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        eprintln!(
            "failover campaign (seed {seed}): {failovers} failovers in {round} rounds, {failover_time:?}, faults {faults:?}; resume median {median:?}, max {max:?} (bound {RESUME_BOUND:?}); {} entries, {} writes acknowledged, {} retried attempts, {} distinct checkpoints checked",
            verdict.entries,
            verdict.acknowledged,
            record.retries.load(Ordering::Relaxed),
            verdict.notes_checked
        );
        assert!(
            verdict.problems.is_empty(),
            "seed {seed}: {} problems:\n{}",
            verdict.problems.len(),
            verdict.problems.join("\n")
        );
        assert!(failovers >= rounds);
        assert!(verdict.acknowledged > rounds, "the workload made progress");
        drop(front);
        drop(pair);
        drop(peer);
        drop(to_etcd);
        drop(etcd);
    })
    .await;
}

/// The restore guard: a node restored from a backup older than what a partner's witness
/// cosigned refuses to sign (and says what to do), instead of forking its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restored_behind_what_a_partner_cosigned_refuses_to_sign() {
    use federation_tests::harness::{Node, FAST_FEDERATION};
    bounded(Duration::from_secs(180), "the restore guard", async {
        let etcd = EtcdCluster::start(1).await;
        let mut pair = Pair::start("air", &etcd.endpoints()).await;
        pair.nodes[1].kill9();
        let coffee = Node::start_new("coffee", FAST_FEDERATION).await;
        let http = http_client();
        let (a, key) = (pair.nodes[0].url.clone(), pair.admin_key.clone());
        let r = http
            .post(format!("{a}/v1/admin/partners"))
            .bearer_auth(&key)
            .json(
                &json!({"brand": "coffee", "url": coffee.url, "verifier_key": coffee.verifier_key}),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "pin coffee: {}", r.status());
        assert!(coffee.pin("air", &a, &pair.verifier_key).await.is_success());
        for i in 0..3 {
            assert!(earn(&http, &a, &key, &format!("e{i}"), 5)
                .await
                .status()
                .is_success());
        }
        // A backup at 3 entries.
        let backup = tempfile::tempdir().unwrap();
        let to = backup.path().join("air");
        let out = tokio::process::Command::new(node_bin())
            .args(["backup", "--data"])
            .arg(&pair.nodes[0].data)
            .arg("--to")
            .arg(&to)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 3..10 {
            assert!(earn(&http, &a, &key, &format!("e{i}"), 5)
                .await
                .status()
                .is_success());
        }
        // The partner's witness cosigns the log at 10.
        wait_until("coffee cosigned air at 10", Duration::from_secs(30), || {
            let (http, a) = (http.clone(), a.clone());
            async move {
                let v: Value = http
                    .get(format!("{a}/v1/checkpoint/cosigned"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if v["size"] == 10 && v["cosigners"].as_array().is_some_and(|c| !c.is_empty()) {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            }
        })
        .await;
        // The machine is lost; the brand restores the backup onto new coordination records.
        pair.nodes[0].kill9();
        let data = pair.nodes[0].data.clone();
        std::fs::remove_dir_all(&data).unwrap();
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&to)
            .arg(&data)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let mut config = std::fs::read_to_string(data.join("config.toml")).unwrap();
        config.push_str("prefix = \"/loyalty/air-restored\"\n");
        std::fs::write(data.join("config.toml"), config).unwrap();
        pair.nodes[0].start();
        let exited = wait_until("the restored node stops", Duration::from_secs(30), || {
            let node = &mut pair.nodes[0];
            let e = node.restart_if_exited();
            async move { e.ok_or_else(|| "still running".to_owned()) }
        })
        .await;
        assert_eq!(exited.code(), Some(3), "{}", pair.nodes[0].log());
        let log = pair.nodes[0].log();
        assert!(
            log.contains(
                "partner coffee cosigned size 10 of this log, larger than the 3 entries held here"
            ),
            "{log}"
        );
        // Restarted by its supervisor, it serves no signed tree head of its older log any
        // more (the refusal is recorded durably), and it does not lead again: it stays a
        // standby that says why.
        pair.wait_role(0, "standby", Duration::from_secs(30)).await;
        let st = pair.nodes[0]
            .status(&http, Duration::from_secs(2))
            .await
            .unwrap();
        for path in [
            "/checkpoint",
            "/v1/log/checkpoints",
            "/v1/log/entries/0/receipt",
        ] {
            let r = http.get(format!("{a}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 503, "{path}");
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["code"], "restore_refused", "{path}: {p}");
        }
        let r = http
            .get(format!("{a}/v1/log/entries?start=0&end=3"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "its entries are still served");
        wait_until(
            "the refused node says why it does not lead",
            Duration::from_secs(10),
            || {
                let (node, http) = (&pair.nodes[0], http.clone());
                async move {
                    let st = node
                        .status(&http, Duration::from_secs(1))
                        .await
                        .ok_or("no status")?;
                    let why = st["not_eligible"].as_str().unwrap_or_default().to_owned();
                    if why.contains("restore guard refused") {
                        Ok(())
                    } else {
                        Err(format!("{st}"))
                    }
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2 * LEASE_TTL_S)).await;
        assert!(
            pair.nodes[0].restart_if_exited().is_none() && pair.nodes[0].exits.len() == 1,
            "the refused node does not take over again: {st}\n{}",
            pair.nodes[0].log_tail(40)
        );
        // It signed nothing new: the partner saw one history. While the restored node served
        // its older checkpoint (before the guard refused), the partner may have recorded what
        // it was served, a smaller checkpoint (`shrink`, unproven: no freeze); never a fork.
        for e in coffee.evidence().await.unwrap() {
            assert_eq!(
                (e["kind"].as_str(), e["proven"].as_bool()),
                (Some("shrink"), Some(false)),
                "{e}"
            );
        }
        let partner = coffee.partner("air").await.unwrap();
        assert_eq!(partner["frozen"], false, "{partner}");
        pair.nodes[0].kill9();
        drop(etcd);
    })
    .await;
}
