//! Cross-brand redemption throughput between two real `loyalty-node` processes on loopback.
//!
//! `cargo bench -p federation-tests --bench redemptions -- [--seconds 20] [--clients 1,16]`
//!
//! Two brands (`air`, `coffee`) pin each other, co-sign an agreement both ways and log rate
//! cards; members of each earn. Then, for each client count, every client runs whole
//! redemptions one after another, alternating directions: the member's brand logs a spend
//! authorisation, and at the redeeming brand a quote, a prepare (a signed peer request that
//! holds the points at the member's brand) and a commit (the member's brand posts the hold and
//! logs the payable, the redeeming brand verifies its receipts and logs the receivable): four
//! HTTP calls from the app, two signed peer calls, seven log entries over two logs, each
//! durable before it is answered. Prints
//! `node redemptions clients=C per_s=R p50_ms=.. p99_ms=.. redemptions=N errors=E`, the
//! latency being that of a whole redemption.

use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_tests::harness::{now_ms, pin_all, send, start_nodes, Node, FAST_FEDERATION};
use federation_tests::redemption::{agree, mirrored_and_after, rate_card, terms};
use serde_json::{json, Value};

const BRANDS: [&str; 2] = ["air", "coffee"];
const MEMBERS: usize = 64;

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

#[derive(Clone)]
struct Endpoint {
    url: String,
    key: String,
}

async fn post(
    http: &reqwest::Client,
    ep: &Endpoint,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let a = send(
        http.post(format!("{}{path}", ep.url))
            .bearer_auth(&ep.key)
            .json(body),
    )
    .await?;
    a.json().and_then(|v| {
        if a.is_success() {
            Ok(v)
        } else {
            Err(format!("POST {path}: {} {v}", a.status))
        }
    })
}

/// One whole redemption of `points` of `member` (of brand `payer`) at the other brand.
async fn redeem(
    http: &reqwest::Client,
    eps: &[Endpoint; 2],
    payer: usize,
    id: &str,
    member: &str,
    points: u64,
    far: u64,
) -> Result<(), String> {
    let (p, q) = (&eps[payer], &eps[1 - payer]);
    let auth = format!("au-{id}");
    post(
        http,
        p,
        &format!("/v1/members/{member}/authorisations"),
        &json!({"id": auth, "payee": BRANDS[1 - payer], "max_points": points, "expires_at": far}),
    )
    .await?;
    post(
        http,
        q,
        "/v1/redemptions/quote",
        &json!({"redemption": id, "agreement": "agr-bench", "payer": BRANDS[payer],
                "member": member, "points": points}),
    )
    .await?;
    post(
        http,
        q,
        &format!("/v1/redemptions/{id}/prepare"),
        &json!({"authorisation": auth}),
    )
    .await?;
    let c = post(http, q, &format!("/v1/redemptions/{id}/commit"), &json!({})).await?;
    if c["receivable"]["index"].as_u64().is_none() {
        return Err(format!("commit answered without a receivable: {c}"));
    }
    Ok(())
}

fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let clients: Vec<usize> = arg("--clients")
        .unwrap_or_else(|| "1,16".into())
        .split(',')
        .map(|c| c.parse().expect("--clients takes numbers"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nodes: Vec<Node> = start_nodes(&BRANDS, FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let mut t = terms("agr-bench", 150);
        t["directions"] = json!([
            {"payer": "air", "payee": "coffee"},
            {"payer": "coffee", "payee": "air"}
        ]);
        t["credit_limit_minor"] = json!(1_000_000_000_000_u64);
        t["period_origin"] = json!(now_ms());
        agree(&nodes[0], &nodes[1], &t).await;
        for (n, node) in nodes.iter().enumerate() {
            let earns: Vec<Value> = (0..MEMBERS)
                .map(|m| json!({"member": format!("m{n}-{m}"), "id": format!("e-{m}"), "points": 1_000_000_000u64}))
                .collect();
            node.post_json("/v1/earns", &json!({ "earns": earns }))
                .await
                .unwrap()
                .ok_json("earns");
        }
        let (_, t_air) = rate_card(&nodes[0], "rc-air", "0.01").await;
        let (_, t_coffee) = rate_card(&nodes[1], "rc-coffee", "0.002").await;
        mirrored_and_after(&nodes[1], &nodes[0], t_air).await;
        mirrored_and_after(&nodes[0], &nodes[1], t_coffee).await;
        let eps = Arc::new([
            Endpoint { url: nodes[0].url.clone(), key: nodes[0].admin_key.clone() },
            Endpoint { url: nodes[1].url.clone(), key: nodes[1].admin_key.clone() },
        ]);
        let far = now_ms() + 6 * 3_600_000;
        for (round, n) in clients.iter().copied().enumerate() {
            let stop = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..n {
                let eps = eps.clone();
                tasks.push(tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0usize);
                    while Instant::now() < stop {
                        i += 1;
                        let payer = (c + i) % 2;
                        let member = format!("m{payer}-{}", (c * 7 + i) % MEMBERS);
                        let id = format!("r{round}-{c}-{i}");
                        let t0 = Instant::now();
                        match redeem(&http, &eps, payer, &id, &member, 5 + (i as u64 % 95), far).await {
                            Ok(()) => lat.push(t0.elapsed()),
                            Err(e) => {
                                errors += 1;
                                if errors <= 3 {
                                    eprintln!("redemption {id}: {e}");
                                }
                            }
                        }
                    }
                    (lat, errors)
                }));
            }
            let t0 = Instant::now();
            let (mut all, mut errors) = (Vec::new(), 0);
            for t in tasks {
                let (l, e) = t.await.unwrap();
                all.extend(l);
                errors += e;
            }
            let secs = t0.elapsed().as_secs_f64();
            all.sort();
            println!(
                "node redemptions clients={n} per_s={:.0} p50_ms={:.2} p99_ms={:.2} redemptions={} errors={errors}",
                all.len() as f64 / secs,
                percentile(&all, 0.50),
                percentile(&all, 0.99),
                all.len()
            );
        }
        drop(nodes);
    });
}
