//! A fault campaign (DESIGN.md §9, issue 7): three real `loyalty-node` processes (air, coffee,
//! gym) on loopback, each partner pinned at a fault-injecting proxy dedicated to that (from,
//! to) pair ([`crate::proxy`]), and each node's apps behind a proxy of their own; agreements
//! between every pair in both directions; a seeded workload of concurrent earns, redeems,
//! holds and cross-brand redemptions (with voids and refunds) that records every acknowledged
//! write and every redemption's outcome ([`workload`]); a seeded nemesis that kills and
//! restarts nodes, skews one node's clock, and partitions, delays and heals links
//! ([`nemesis`]); and at the end, after healing, resuming every unfinished redemption
//! ([`resume`]) and letting sync catch up, a bank-style check of the invariants
//! ([`checker`]).
//!
//! Reproducing: the seed fixes the nemesis schedule and every worker's sequence of operations
//! (each worker draws from its own generator, before it knows any outcome). Which operations
//! land inside which fault, and the interleaving of concurrent requests, depend on timing, so
//! a failing seed replays the same schedule and workload, not necessarily the same
//! interleaving.
//!
//! Invariants: every wait is bounded; every process and proxy the campaign starts is stopped
//! when it ends, however it ends; every failure message names the seed.

pub mod checker;
pub mod logs;
pub mod nemesis;
pub mod record;
pub mod resume;
pub mod settlement;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::checkpoint::NoteVerifier;
use serde_json::{json, Value};

use crate::harness::{now_ms, start_nodes, u64_field, wait_until, Node, FAST_FEDERATION};
use crate::proxy::Proxy;

/// Environment variable with the campaign's seed (a `u64`); a fresh random one by default.
pub const SEED_ENV: &str = "LOYALTY_CAMPAIGN_SEED";
/// Environment variable with the workload's duration in seconds.
pub const SECONDS_ENV: &str = "LOYALTY_CAMPAIGN_SECONDS";
/// The workload's duration when [`SECONDS_ENV`] is not set: a short campaign, for CI.
pub const SECONDS_DEFAULT: u64 = 45;
/// The brands, in the order every index in the campaign refers to.
pub const BRANDS: [&str; 3] = ["air", "coffee", "gym"];
/// Members of each brand (`m0`, `m1`, ...), each with [`INITIAL_POINTS`] at the start.
pub const MEMBERS_PER_BRAND: usize = 6;
/// Points each member earns before the workload starts.
pub const INITIAL_POINTS: u64 = 50_000;
/// Length of the agreements' settlement periods: short, so that periods end during the run
/// and their statements can be co-signed after it.
pub const PERIOD_MS: u64 = 10_000;
/// The agreements' credit limit: high enough never to refuse a commit.
pub const CREDIT_LIMIT_MINOR: u64 = 1_000_000_000_000;
/// The agreements' fee, in basis points.
pub const FEE_BPS: u64 = 150;
/// Concurrent workload tasks.
pub const WORKERS: usize = 6;
/// The longest a setup or end-of-run phase may take before the campaign fails.
pub const PHASE_LIMIT: Duration = Duration::from_secs(180);

/// What one campaign runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub seed: u64,
    /// How long the workload and the nemesis run.
    pub workload: Duration,
}

impl Settings {
    /// The seed from [`SEED_ENV`] (or a fresh random one) and the duration from
    /// [`SECONDS_ENV`] (or [`SECONDS_DEFAULT`]).
    pub fn from_env() -> Settings {
        let seed = match std::env::var(SEED_ENV) {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{SEED_ENV}={s:?} is not a u64: {e}")),
            Err(_) => rand_core::RngCore::next_u64(&mut rand_core::OsRng),
        };
        let seconds = match std::env::var(SECONDS_ENV) {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{SECONDS_ENV}={s:?} is not a number: {e}")),
            Err(_) => SECONDS_DEFAULT,
        };
        Settings {
            seed,
            workload: Duration::from_secs(seconds),
        }
    }
}

/// What the workload and the checker need to know about one brand's node.
#[derive(Debug, Clone)]
pub struct BrandInfo {
    pub index: usize,
    pub brand: String,
    /// The node itself (used after the run, once every fault is healed).
    pub url: String,
    /// The node through its apps' proxy (used by the workload).
    pub front_url: String,
    pub admin_key: String,
    pub verifier: NoteVerifier,
}

impl BrandInfo {
    /// A client straight to the node with the SDK's default retries.
    pub fn client(&self) -> sdk::Client {
        self.client_at(&self.url, sdk::RetryPolicy::default())
    }

    /// A client for the workload: through the apps' proxy, a few quick retries, so that an
    /// operation fails soon under a fault and is resumed later.
    pub fn app_client(&self) -> sdk::Client {
        self.client_at(
            &self.front_url,
            sdk::RetryPolicy {
                attempts_max: 3,
                backoff_initial_ms: 200,
                backoff_max_ms: 1_000,
                total_ms_max: 5_000,
            },
        )
    }

    fn client_at(&self, url: &str, retry: sdk::RetryPolicy) -> sdk::Client {
        sdk::Client::builder(url)
            .api_key(self.admin_key.clone())
            .verifier(self.verifier.clone())
            .retry(retry)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an SDK client")
    }

    /// This brand's id, typed.
    pub fn id(&self) -> sdk::BrandId {
        self.brand.parse().expect("a valid brand id")
    }
}

/// The proxies: one per (from, to) pair of nodes, which `from` pins as `to`'s URL, and one in
/// front of each node for its apps.
pub struct Network {
    pub links: BTreeMap<(usize, usize), Proxy>,
    pub fronts: Vec<Proxy>,
}

impl Network {
    /// Starts a proxy for every ordered pair of `nodes` and one in front of each.
    pub async fn start(nodes: &[Node]) -> Network {
        let addr = |n: &Node| -> std::net::SocketAddr {
            format!("127.0.0.1:{}", n.port).parse().expect("an address")
        };
        let mut links = BTreeMap::new();
        for (i, _) in nodes.iter().enumerate() {
            for (j, to) in nodes.iter().enumerate() {
                if i != j {
                    let p = Proxy::start(addr(to)).await.expect("start a link proxy");
                    links.insert((i, j), p);
                }
            }
        }
        let mut fronts = Vec::new();
        for n in nodes {
            fronts.push(Proxy::start(addr(n)).await.expect("start a front proxy"));
        }
        Network { links, fronts }
    }

    /// Removes every fault from every proxy.
    pub fn heal_all(&self) {
        for p in self.links.values().chain(&self.fronts) {
            p.heal();
        }
    }
}

/// The id of the agreement between brands `a` and `b` (in [`BRANDS`] order).
pub fn agreement_id(a: usize, b: usize) -> String {
    let (a, b) = (a.min(b), a.max(b));
    format!("agr-{}-{}", BRANDS[a], BRANDS[b])
}

/// The campaign's member ids.
pub fn members() -> Vec<String> {
    (0..MEMBERS_PER_BRAND).map(|k| format!("m{k}")).collect()
}

/// Each brand's base currency and the value of one of its points in it.
const RATE_CARDS: [(&str, &str); 3] = [("EUR", "0.01"), ("EUR", "0.02"), ("USD", "0.015")];
/// The gym's FX rate: EUR per USD.
const USD_EUR: &str = "0.92";

/// The terms of the agreement between `a` and `b`: both directions, EUR, the gym's FX rate
/// where the gym takes part, settlement periods of [`PERIOD_MS`] from `origin`.
fn terms(a: usize, b: usize, origin: u64) -> Value {
    let (a, b) = (a.min(b), a.max(b));
    let fx_source = if a == 2 || b == 2 { "gym" } else { BRANDS[a] };
    json!({
        "agreement": agreement_id(a, b),
        "brands": [BRANDS[a], BRANDS[b]],
        "directions": [
            {"payer": BRANDS[a], "payee": BRANDS[b]},
            {"payer": BRANDS[b], "payee": BRANDS[a]}
        ],
        "settlement_currency": "EUR",
        "fx_source": fx_source,
        "fee_bps": FEE_BPS,
        "credit_limit_minor": CREDIT_LIMIT_MINOR,
        "period_ms": PERIOD_MS,
        "period_origin": origin,
        "rounding": "half_even",
        "valid_from": 0
    })
}

/// Pins every node's partners at the link proxies, publishes rate cards and the FX rate,
/// co-signs the three agreements, gives every member [`INITIAL_POINTS`], and waits until
/// every mirror holds all of it and the rates are in force. Returns the agreements' period
/// origin. Runs before any fault.
async fn set_up(
    nodes: &[Node],
    net: &Network,
    brands: &[BrandInfo],
    record: &record::Record,
) -> u64 {
    for (i, n) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i != j {
                let a = n
                    .pin(&to.brand, &net.links[&(i, j)].url(), &to.verifier_key)
                    .await;
                assert!(
                    a.is_success(),
                    "{} pins {}: {} {}",
                    n.brand,
                    to.brand,
                    a.status,
                    a.text
                );
            }
        }
    }
    let valid_from = now_ms() + 500;
    for (b, (currency, value)) in brands.iter().zip(RATE_CARDS) {
        let w = b
            .client()
            .set_rate_card(&sdk::SetRateCardRequest {
                id: "rc-1".parse().expect("an id"),
                currency: currency.parse().expect("a currency"),
                point_value: value.parse().expect("a decimal"),
                valid_from: sdk::LogTime::new(valid_from).expect("a log time"),
            })
            .await
            .unwrap_or_else(|e| panic!("{}'s rate card: {e}", b.brand));
        record.acked(b.index, "rate_card", &w.receipt);
    }
    let w = brands[2]
        .client()
        .set_fx_rate(&sdk::SetFxRateRequest {
            id: "fx-usd-eur-1".parse().expect("an id"),
            from: "USD".parse().expect("a currency"),
            to: "EUR".parse().expect("a currency"),
            rate: USD_EUR.parse().expect("a decimal"),
            valid_from: sdk::LogTime::new(valid_from).expect("a log time"),
        })
        .await
        .unwrap_or_else(|e| panic!("the gym's FX rate: {e}"));
    record.acked(2, "fx_rate", &w.receipt);
    let origin = now_ms() / PERIOD_MS * PERIOD_MS;
    for a in 0..BRANDS.len() {
        for b in a + 1..BRANDS.len() {
            let t = terms(a, b, origin);
            for (k, n) in [&nodes[a], &nodes[b]].into_iter().enumerate() {
                let v = n
                    .post_json("/v1/admin/agreements", &t)
                    .await
                    .unwrap_or_else(|e| panic!("{} approves {}: {e}", n.brand, t["agreement"]))
                    .ok_json("approve an agreement");
                if k == 1 {
                    assert_eq!(v["status"], json!("logged"), "{v}");
                }
            }
        }
    }
    for b in brands {
        let c = b.client();
        for m in members() {
            let w = c
                .earn(
                    &m.parse().expect("a member id"),
                    &sdk::EarnRequest::new(
                        format!("init-{m}").parse().expect("an id"),
                        sdk::Points::new(INITIAL_POINTS).expect("points"),
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("{} {m} earns: {e}", b.brand));
            record.acked(b.index, "earn", &w.receipt);
        }
    }
    let mut sizes = Vec::new();
    for n in nodes {
        sizes.push(n.log_size().await.expect("a log size"));
    }
    for (i, n) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            wait_until(
                "the set-up is mirrored",
                Duration::from_secs(60),
                || async {
                    let p = n.partner(&to.brand).await?;
                    let v = u64_field(&p, "verified_size")?;
                    if v >= sizes[j] && now_ms() > valid_from + 50 {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} mirrors {} of {} entries of {}",
                            n.brand, v, sizes[j], to.brand
                        ))
                    }
                },
            )
            .await;
        }
    }
    origin
}

/// What a campaign did, for the summary line and the test's own checks.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub seed: u64,
    pub workload: Duration,
    pub acked_writes: usize,
    pub redemptions: usize,
    pub committed: usize,
    pub voided: usize,
    pub refunds: usize,
    pub local_holds: usize,
    pub nemesis: BTreeMap<&'static str, u64>,
    pub statements: usize,
    pub log_sizes: Vec<u64>,
    pub ops: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Redemptions meant to commit that did not, by the workload's first failure (status and
    /// code): after the resume they were voided, released or never held.
    pub not_committed: BTreeMap<String, u64>,
}

/// Runs one campaign and checks it; panics, naming the seed, at the first failure of a phase
/// or with every violation the checker found.
pub async fn run(settings: Settings) -> Outcome {
    println!("campaign seed: {}", settings.seed);
    println!(
        "campaign: {} s of workload, {WORKERS} workers, nodes {BRANDS:?}; rerun with {SEED_ENV}={} {SECONDS_ENV}={}",
        settings.workload.as_secs(),
        settings.seed,
        settings.workload.as_secs()
    );
    // Run in a task so that a panic anywhere (a node that does not come back, a phase that
    // does not finish) is caught here and reported with the seed.
    let task = tokio::spawn(run_inner(settings));
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => {
            let why = if e.is_panic() {
                panic_text(e.into_panic())
            } else {
                e.to_string()
            };
            panic!(
                "campaign seed: {} failed (rerun with {SEED_ENV}={} {SECONDS_ENV}={}): {why}",
                settings.seed,
                settings.seed,
                settings.workload.as_secs()
            )
        }
    }
}

/// Aborts tasks when dropped (finished ones are not affected).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

async fn run_inner(settings: Settings) -> Outcome {
    let seed = settings.seed;
    let started = Instant::now();
    let nodes = start_nodes(&BRANDS, FAST_FEDERATION).await;
    let net = Arc::new(Network::start(&nodes).await);
    let brands: Arc<Vec<BrandInfo>> = Arc::new(
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| BrandInfo {
                index: i,
                brand: n.brand.clone(),
                url: n.url.clone(),
                front_url: net.fronts[i].url(),
                admin_key: n.admin_key.clone(),
                verifier: n.log_verifier(),
            })
            .collect(),
    );
    let record = Arc::new(record::Record::default());
    let origin = crate::harness::bounded(
        PHASE_LIMIT,
        "set-up",
        set_up(&nodes, &net, &brands, &record),
    )
    .await;
    println!(
        "campaign: set up in {:.1} s (settlement periods of {} s from {origin})",
        started.elapsed().as_secs_f64(),
        PERIOD_MS / 1000
    );

    let schedule = nemesis::Schedule::generate(seed, settings.workload);
    println!("campaign: nemesis schedule ({} actions):", schedule.len());
    for line in schedule.describe() {
        println!("  {line}");
    }
    let t0 = Instant::now();
    let deadline = t0 + settings.workload;
    let nemesis = tokio::spawn(nemesis::run(schedule, nodes, net.clone(), t0, deadline));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(workload::worker(
            seed,
            w,
            brands.clone(),
            record.clone(),
            deadline,
        )));
    }
    // Should this task fail, nothing it started runs on (the nodes die with the nemesis).
    let _abort = AbortOnDrop(
        workers
            .iter()
            .map(|w| w.abort_handle())
            .chain([nemesis.abort_handle()])
            .collect(),
    );
    for w in workers {
        crate::harness::bounded(
            settings.workload + workload::OP_LIMIT + Duration::from_secs(30),
            "a workload task",
            w,
        )
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    let (nodes, actions) =
        crate::harness::bounded(settings.workload + PHASE_LIMIT, "the nemesis", nemesis)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    net.heal_all();
    println!(
        "campaign: workload and nemesis done after {:.1} s; healed; resuming unfinished work",
        t0.elapsed().as_secs_f64()
    );

    crate::harness::bounded(PHASE_LIMIT, "resume", resume::resume_all(&brands, &record)).await;
    let snap = record.snapshot();
    println!(
        "campaign: {} acknowledged writes; operations {:?}; failed calls by code {:?}; \
         nemesis {actions:?}; checking",
        snap.acked.len(),
        snap.ops,
        snap.errors
    );
    let outcome = checker::check(
        checker::Run {
            seed,
            origin,
            nodes: &nodes,
            brands: &brands,
            record: &record,
        },
        actions,
    )
    .await;
    let outcome = Outcome {
        workload: settings.workload,
        ..outcome
    };
    println!(
        "campaign: redemptions meant to commit that did not, by first failure: {:?}",
        outcome.not_committed
    );
    println!(
        "campaign seed: {seed}: passed in {:.1} s: {} acknowledged writes, {} redemptions \
         ({} committed, {} voided, {} refunds), {} local holds, {} statements, nemesis {:?}, \
         log sizes {:?}",
        started.elapsed().as_secs_f64(),
        outcome.acked_writes,
        outcome.redemptions,
        outcome.committed,
        outcome.voided,
        outcome.refunds,
        outcome.local_holds,
        outcome.statements,
        outcome.nemesis,
        outcome.log_sizes
    );
    drop(nodes);
    drop(net);
    outcome
}
