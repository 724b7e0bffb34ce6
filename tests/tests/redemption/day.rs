//! A settlement day of many redemptions in both directions between real nodes: at least 10,000
//! redemptions committed through the real flow (quote, prepare, commit at the payee) with
//! refunds, a natural discrepancy (the payee crashed before logging its receivable) found by
//! both reconciliations and refused as a statement, then resumed; the period ends (both clocks
//! skewed past it), the statement is co-signed and logged identically on both sides, equals the
//! sums of what the commits and refunds answered, and both logs replay. A dishonest fake partner
//! (see [`a_dishonest_partners_lines_are_each_reported_and_no_statement_is_signed`]) supplies
//! the discrepancies honest nodes cannot produce: an amount changed, a line across the period
//! boundary, and lines missing on either side.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use federation_tests::fake_partner::FakePartner;
use federation_tests::harness::{http_client, Answer};
use ledger::receipt::Receipt;

#[allow(unused_imports)]
use super::*;

/// Redemptions committed in each direction in the bulk phase (the day has one more, the one
/// interrupted by a crash).
const PER_DIRECTION: usize = 5_000;
/// Concurrent clients in the bulk phase.
const TASKS: usize = 24;
/// Members per brand.
const MEMBERS: usize = 4;
/// Every `REFUND_EVERY`th redemption of each direction gets two refunds: one point, then half
/// of the rest.
const REFUND_EVERY: usize = 40;
/// Most retries of one request in the bulk phase (see [`Endpoint::post_ok`]).
const RETRIES_MAX: usize = 5;
/// The whole test's limit.
const DAY_LIMIT: Duration = Duration::from_secs(480);
/// A settlement period: one day.
const PERIOD_MS: u64 = 86_400_000;
const AGR: &str = "agr-day";
const BRANDS: [&str; 2] = ["air", "coffee"];

/// Where a task sends requests: a node's URL and admin key.
#[derive(Clone)]
struct Endpoint {
    url: String,
    key: String,
}

impl Endpoint {
    fn of(node: &Node) -> Endpoint {
        Endpoint {
            url: node.url.clone(),
            key: node.admin_key.clone(),
        }
    }

    async fn post(&self, http: &reqwest::Client, path: &str, body: &Value) -> Answer {
        send(
            http.post(format!("{}{path}", self.url))
                .bearer_auth(&self.key)
                .json(body),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST path`, which must succeed; every step of the flow is idempotent, so an answer
    /// the API documents as "retry the same request" (`502 partner_unavailable`, `503`) or a
    /// transport failure is retried, at most [`RETRIES_MAX`] times, and counted in `retries`.
    async fn post_ok(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
        retries: &AtomicUsize,
    ) -> Value {
        let mut attempt = 0;
        loop {
            let a = send(
                http.post(format!("{}{path}", self.url))
                    .bearer_auth(&self.key)
                    .json(body),
            )
            .await;
            let transient = match &a {
                Err(_) => true,
                Ok(a) => {
                    a.status == 503
                        || (a.status == 502 && a.code().as_deref() == Some("partner_unavailable"))
                }
            };
            if !transient || attempt == RETRIES_MAX {
                let a = a.unwrap_or_else(|e| panic!("POST {path}: {e}"));
                return a.ok_json(&format!("POST {path} (after {attempt} retries)"));
            }
            attempt += 1;
            retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        }
    }
}

/// One redemption of the day: `payer` (0 = air, 1 = coffee) is the member's brand, the other
/// one the payee.
#[derive(Clone, Debug)]
struct Job {
    payer: usize,
    id: String,
    member: String,
    points: u64,
}

/// A committed redemption, as the payee's commit answered it.
#[derive(Clone, Debug)]
struct Done {
    job: Job,
    amount_minor: u64,
    /// The payer's `payable` entry and the payee's `receivable` entry.
    payable_index: u64,
    receivable_index: u64,
}

/// A refund, as the payee answered it.
#[derive(Clone, Debug)]
struct Refunded {
    payer: usize,
    points: u64,
    amount_minor: u64,
}

fn agreement_terms(origin: u64) -> Value {
    let mut t = terms(AGR, 150);
    t["directions"] = json!([
        {"payer": "air", "payee": "coffee"},
        {"payer": "coffee", "payee": "air"}
    ]);
    t["credit_limit_minor"] = json!(1_000_000_000_u64);
    t["period_origin"] = json!(origin);
    t["period_ms"] = json!(PERIOD_MS);
    t
}

/// Authorises at the payer, quotes, prepares and commits at the payee; every answer checked.
async fn redeem(
    http: &reqwest::Client,
    eps: &[Endpoint; 2],
    job: &Job,
    far: u64,
    retries: &AtomicUsize,
) -> Done {
    let (payer, payee) = (&eps[job.payer], &eps[1 - job.payer]);
    let auth = format!("au-{}", job.id);
    payer
        .post_ok(
            http,
            &format!("/v1/members/{}/authorisations", job.member),
            &json!({"id": auth, "payee": BRANDS[1 - job.payer], "max_points": job.points, "expires_at": far}),
            retries,
        )
        .await;
    let q = payee
        .post_ok(
            http,
            "/v1/redemptions/quote",
            &json!({"redemption": job.id, "agreement": AGR, "payer": BRANDS[job.payer],
                    "member": job.member, "points": job.points}),
            retries,
        )
        .await;
    let amount = q["quote"]["amount_minor"].as_u64().unwrap();
    payee
        .post_ok(
            http,
            &format!("/v1/redemptions/{}/prepare", job.id),
            &json!({"authorisation": auth}),
            retries,
        )
        .await;
    let c = payee
        .post_ok(
            http,
            &format!("/v1/redemptions/{}/commit", job.id),
            &json!({}),
            retries,
        )
        .await;
    assert_eq!(c["amount_minor"].as_u64(), Some(amount), "{c}");
    Done {
        job: job.clone(),
        amount_minor: amount,
        payable_index: c["payer"]["payable"]["index"].as_u64().unwrap(),
        receivable_index: c["receivable"]["index"].as_u64().unwrap(),
    }
}

/// Waits for every task; at the first that panics, aborts the others and fails with its panic.
async fn join_all(mut set: tokio::task::JoinSet<()>) {
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            set.abort_all();
            match e.try_into_panic() {
                Ok(p) => std::panic::resume_unwind(p),
                Err(e) => panic!("a task failed: {e}"),
            }
        }
    }
}

/// Runs `jobs` with [`TASKS`] concurrent clients; returns what each committed, by id, and
/// how many requests were retried.
async fn redeem_all(eps: &[Endpoint; 2], jobs: Vec<Job>, far: u64) -> (Vec<Done>, usize) {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Mutex::new(Vec::with_capacity(jobs.len())));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (jobs, next, done, eps, retries) = (
            jobs.clone(),
            next.clone(),
            done.clone(),
            eps.clone(),
            retries.clone(),
        );
        set.spawn(async move {
            let http = http_client();
            while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let d = redeem(&http, &eps, job, far, &retries).await;
                done.lock().unwrap().push(d);
            }
        });
    }
    join_all(set).await;
    let mut out = std::mem::take(&mut *done.lock().unwrap());
    out.sort_by(|a, b| a.job.id.cmp(&b.job.id));
    (out, retries.load(Ordering::Relaxed))
}

/// Two refunds of each redemption in `of`, one after the other (one point, then half of the
/// rest), several redemptions at once.
async fn refund_all(eps: &[Endpoint; 2], of: Vec<Done>) -> Vec<Refunded> {
    let of = Arc::new(of);
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (of, next, out, eps, retries) = (
            of.clone(),
            next.clone(),
            out.clone(),
            eps.clone(),
            retries.clone(),
        );
        set.spawn(async move {
            let http = http_client();
            while let Some(d) = of.get(next.fetch_add(1, Ordering::Relaxed)) {
                let payee = &eps[1 - d.job.payer];
                let half = (d.job.points - 1) / 2;
                for (n, points) in [(1, 1), (2, half)] {
                    let v = payee
                        .post_ok(
                            &http,
                            &format!("/v1/redemptions/{}/refunds", d.job.id),
                            &json!({"refund": format!("rf-{n}"), "points": points}),
                            &retries,
                        )
                        .await;
                    assert_eq!(v["points"].as_u64(), Some(points), "{v}");
                    assert_eq!(
                        v["refunded_points"].as_u64(),
                        Some(1 + (n - 1) * half),
                        "{v}"
                    );
                    out.lock().unwrap().push(Refunded {
                        payer: d.job.payer,
                        points,
                        amount_minor: v["amount_minor"].as_u64().unwrap(),
                    });
                }
            }
        });
    }
    join_all(set).await;
    let v = std::mem::take(&mut *out.lock().unwrap());
    v
}

/// `GET /v1/reconciliation/{partner}` for `[from, to)`.
async fn reconciliation(node: &Node, partner: &str, from: u64, to: u64) -> Value {
    node.get(&format!("/v1/reconciliation/{partner}?from={from}&to={to}"))
        .await
        .unwrap()
        .ok_json("reconciliation")
}

/// The signed agreement logged by `node` (among its first entries).
async fn logged_agreement(node: &Node, id: &str) -> ledger::agreement::SignedAgreement {
    let size = node.log_size().await.unwrap().min(64);
    let v = node
        .get(&format!("/v1/log/entries?start=0&end={size}"))
        .await
        .unwrap()
        .ok_json("log entries");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(e["entry"].as_str().unwrap()).unwrap())
        .find(|e| e["type"] == json!("agreement") && e["id"] == json!(id))
        .map(|e| serde_json::from_value(e["body"].clone()).unwrap())
        .unwrap_or_else(|| panic!("{} logged no agreement {id}", node.brand))
}

/// Verifies and replays a node's whole log; the system accounts by name.
async fn replay(node: &Node) -> BTreeMap<String, i128> {
    let s = sdk::verify_log(
        &node.client(),
        &node.log_verifier(),
        sdk::VerifyOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}'s log does not verify: {e:?}", node.brand));
    s.system_balances
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// The one reported line of `r` with a status other than `matched`, after checking that every
/// other line is matched.
fn the_unmatched_line(r: &Value) -> Value {
    let lines = r["lines"].as_array().unwrap();
    let odd: Vec<&Value> = lines
        .iter()
        .filter(|l| l["status"] != json!("matched"))
        .collect();
    assert_eq!(odd.len(), 1, "{odd:?}");
    odd[0].clone()
}

/// A day of at least 10,000 redemptions in both directions of one agreement between two real
/// nodes, with refunds; a crash of the payee between the payer's payable and its own receivable
/// is found by both reconciliations (the line missing on the right side, with the payer's entry
/// index) and blocks the statement until the commit is resumed; then, the period over, the
/// statement is co-signed once, logged identically in both logs, and equals the sums of the
/// commits' and refunds' answers; both reconciliations agree on every line; both logs replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_ten_thousand_redemptions_is_reconciled_and_cosigned() {
    bounded(DAY_LIMIT, "settlement day", async {
        let started = Instant::now();
        let mut nodes = start_nodes(&BRANDS, FAST_FEDERATION).await;
        pin_all(&nodes).await;
        // Settlement period 0 is the day starting now: every entry of the run is in it.
        let origin = now_ms();
        let to = origin + PERIOD_MS;
        agree(&nodes[0], &nodes[1], &agreement_terms(origin)).await;
        for (n, node) in nodes.iter().enumerate() {
            for m in 0..MEMBERS {
                node.client()
                    .earn(
                        &format!("m{n}-{m}").parse().unwrap(),
                        &sdk::EarnRequest::new(
                            format!("e-{m}").parse().unwrap(),
                            sdk::Points::new(1_000_000).unwrap(),
                        ),
                    )
                    .await
                    .unwrap();
            }
        }
        // Air points are worth 1 cent, coffee points 0.2 cents (so a one-point refund of a
        // coffee redemption is worth 0 and makes no line); 1.5 % fee.
        let (_, t_air) = rate_card(&nodes[0], "rc-air", "0.01").await;
        let (_, t_coffee) = rate_card(&nodes[1], "rc-coffee", "0.002").await;
        mirrored_and_after(&nodes[1], &nodes[0], t_air).await;
        mirrored_and_after(&nodes[0], &nodes[1], t_coffee).await;
        let eps = [Endpoint::of(&nodes[0]), Endpoint::of(&nodes[1])];
        let far = now_ms() + 3_600_000;

        // The bulk: both directions interleaved, TASKS clients at once.
        let jobs: Vec<Job> = (0..2 * PER_DIRECTION)
            .map(|k| {
                let (payer, i) = (k % 2, k / 2);
                Job {
                    payer,
                    id: format!("d{payer}-{i:05}"),
                    member: format!("m{payer}-{}", i % MEMBERS),
                    points: 5 + (i as u64 * 7) % 95,
                }
            })
            .collect();
        let t = Instant::now();
        let (mut done, retries) = redeem_all(&eps, jobs, far).await;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{} redemptions in {secs:.1} s: {:.1} redemptions/s ({TASKS} clients, debug build; \
             {retries} requests retried)",
            done.len(),
            done.len() as f64 / secs
        );
        assert_eq!(done.len(), 2 * PER_DIRECTION);
        assert!(done.len() >= 10_000);

        // Refunds of some redemptions of each direction.
        let t = Instant::now();
        let refunded: Vec<Done> = done
            .iter()
            .filter(|d| d.job.id[3..].parse::<usize>().unwrap() % REFUND_EVERY == 0)
            .cloned()
            .collect();
        let mut refunds = refund_all(&eps, refunded.clone()).await;
        println!("{} refunds in {:.1} s", refunds.len(), t.elapsed().as_secs_f64());
        assert_eq!(refunds.len(), 2 * refunded.len());
        let zero = refunds.iter().filter(|r| r.amount_minor == 0).count();
        assert!(
            zero > 0 && zero < refunds.len(),
            "some refunds, not all, are worth 0: {zero} of {}",
            refunds.len()
        );

        // A natural discrepancy: coffee, the payee, crashes after air logged the payable and
        // before coffee logged its receivable.
        nodes[1].stop().await;
        nodes[1].set_env("LOYALTY_FAULT", Some("payee_commit_answered"));
        nodes[1].start().await;
        let eps = [Endpoint::of(&nodes[0]), Endpoint::of(&nodes[1])];
        let http = http_client();
        let crash = Job {
            payer: 0,
            id: "d0-crash".into(),
            member: "m0-0".into(),
            points: 50,
        };
        eps[0]
            .post(
                &http,
                "/v1/members/m0-0/authorisations",
                &json!({"id": "au-crash", "payee": "coffee", "max_points": 50, "expires_at": far}),
            )
            .await
            .ok_json("authorise");
        let q = eps[1]
            .post(
                &http,
                "/v1/redemptions/quote",
                &json!({"redemption": crash.id, "agreement": AGR, "payer": "air", "member": "m0-0", "points": 50}),
            )
            .await
            .ok_json("quote");
        let crash_amount = q["quote"]["amount_minor"].as_u64().unwrap();
        eps[1]
            .post(
                &http,
                "/v1/redemptions/d0-crash/prepare",
                &json!({"authorisation": "au-crash"}),
            )
            .await
            .ok_json("prepare");
        let interrupted = send(
            http.post(format!("{}/v1/redemptions/d0-crash/commit", eps[1].url))
                .bearer_auth(&eps[1].key)
                .json(&json!({})),
        )
        .await;
        assert!(interrupted.is_err(), "coffee crashed: {interrupted:?}");
        // Aborted at the fault point (the process may still be dumping core).
        let deadline = Instant::now() + Duration::from_secs(30);
        while nodes[1].is_running() {
            assert!(Instant::now() < deadline, "coffee did not abort at the fault point");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nodes[1].kill9();
        let hold = nodes[0]
            .get("/v1/holds/d0-crash")
            .await
            .unwrap()
            .ok_json("hold");
        assert_eq!(hold["status"], json!("posted"), "{hold}");

        // Before the period ends, no statement.
        nodes[0]
            .post_json("/v1/statements/coffee", &json!({"period": 0}))
            .await
            .unwrap()
            .assert_problem(409, "period_open", "a statement before the period ended");

        // The period ends: both nodes restart with their clocks a day and a minute ahead.
        let skew = (PERIOD_MS + 60_000).to_string();
        nodes[0].stop().await;
        nodes[1].set_env("LOYALTY_FAULT", None);
        for n in nodes.iter_mut() {
            n.set_env("LOYALTY_CLOCK_SKEW_MS", Some(&skew));
            n.start().await;
        }
        let (air, coffee) = (&nodes[0], &nodes[1]);
        mirrored_and_after(air, coffee, 0).await;
        mirrored_and_after(coffee, air, 0).await;

        // The payable at air, without coffee's receivable: missing at coffee, found by both.
        let payables: Vec<Value> = {
            let size = air.log_size().await.unwrap();
            let v = air
                .get(&format!("/v1/log/entries?start={}&end={size}", size.saturating_sub(20)))
                .await
                .unwrap()
                .ok_json("entries");
            v["entries"].as_array().unwrap().clone()
        };
        let crash_payable = payables
            .iter()
            .find(|e| {
                let d: Value = serde_json::from_str(e["entry"].as_str().unwrap()).unwrap();
                d["type"] == json!("obligation") && d["body"]["quote"]["redemption"] == json!("d0-crash")
            })
            .map(|e| e["index"].as_u64().unwrap())
            .expect("air logged the crashed redemption's payable");
        let lines_before = done.len()
            + refunds.iter().filter(|r| r.amount_minor > 0).count();
        for (node, partner, status, ours, theirs) in [
            (air, "coffee", "missing_theirs", json!(crash_payable), Value::Null),
            (coffee, "air", "missing_ours", Value::Null, json!(crash_payable)),
        ] {
            let r = reconciliation(node, partner, origin, to).await;
            assert_eq!(r["agreed"], json!(false), "{}", node.brand);
            assert_eq!(r["lines"].as_array().unwrap().len(), lines_before + 1);
            let l = the_unmatched_line(&r);
            assert_eq!(
                (
                    &l["status"],
                    &l["payer"],
                    &l["payee"],
                    &l["redemption"],
                    &l["index_ours"],
                    &l["index_theirs"]
                ),
                (
                    &json!(status),
                    &json!("air"),
                    &json!("coffee"),
                    &json!("d0-crash"),
                    &ours,
                    &theirs
                ),
                "{}: {l}",
                node.brand
            );
            let amount = json!(crash_amount);
            let (a_ours, a_theirs) = if status == "missing_theirs" {
                (&amount, &Value::Null)
            } else {
                (&Value::Null, &amount)
            };
            assert_eq!((&l["amount_ours_minor"], &l["amount_theirs_minor"]), (a_ours, a_theirs));
            node.post_json(&format!("/v1/statements/{partner}"), &json!({"period": 0}))
                .await
                .unwrap()
                .assert_problem(409, "statement_disagreed", "a line is missing");
        }
        assert!(air.get("/v1/statements/coffee").await.unwrap().ok_json("none")
            .as_array().unwrap().is_empty());

        // Resumed with the same request, the commit completes: the receivable names air's
        // payable.
        let c = coffee
            .post_json("/v1/redemptions/d0-crash/commit", &json!({}))
            .await
            .unwrap()
            .ok_json("resumed commit");
        assert_eq!(c["amount_minor"], json!(crash_amount));
        assert_eq!(c["payer"]["payable"]["index"], json!(crash_payable));
        done.push(Done {
            job: crash,
            amount_minor: crash_amount,
            payable_index: crash_payable,
            receivable_index: c["receivable"]["index"].as_u64().unwrap(),
        });
        mirrored_and_after(air, coffee, 0).await;
        mirrored_and_after(coffee, air, 0).await;

        // What the statement must say, from the commits' and refunds' answers.
        let mut expect = [(0u64, 0u64, 0u64); 2];
        for d in &done {
            expect[d.job.payer].0 += d.amount_minor;
            expect[d.job.payer].2 += 1;
        }
        refunds.sort_by_key(|r| r.payer);
        for r in refunds.iter().filter(|r| r.amount_minor > 0) {
            expect[r.payer].1 += r.amount_minor;
            expect[r.payer].2 += 1;
        }
        let lines = expect[0].2 + expect[1].2;
        assert!(lines >= 10_000, "{lines} lines");
        let total = |e: (u64, u64, u64)| e.0 as i64 - e.1 as i64;
        let d = total(expect[0]) - total(expect[1]);
        let net = if d >= 0 {
            json!({"payer": "air", "payee": "coffee", "amount_minor": d})
        } else {
            json!({"payer": "coffee", "payee": "air", "amount_minor": -d})
        };
        let gross = |p: usize| {
            json!({"payer": BRANDS[p], "payee": BRANDS[1 - p], "obligations_minor": expect[p].0,
                   "refunds_minor": expect[p].1, "total_minor": total(expect[p]),
                   "lines": expect[p].2})
        };
        let expected = json!({
            "agreement": AGR, "currency": "EUR", "period": {"from": origin, "to": to},
            "gross": [gross(0), gross(1)], "net": net, "lines": lines
        });

        // Both reconciliations agree on every line.
        let by_id: BTreeMap<&str, &Done> = done.iter().map(|d| (d.job.id.as_str(), d)).collect();
        for (me, (node, partner)) in [(air, "coffee"), (coffee, "air")].into_iter().enumerate() {
            let r = reconciliation(node, partner, origin, to).await;
            assert_eq!(r["agreed"], json!(true), "{}", node.brand);
            let ls = r["lines"].as_array().unwrap();
            assert_eq!(ls.len() as u64, lines);
            assert!(ls.iter().all(|l| l["status"] == json!("matched")));
            // Each commit's line names the payer's payable and the payee's receivable.
            let mut commits = 0;
            for l in ls.iter().filter(|l| l["refund"].is_null()) {
                let d = by_id[l["redemption"].as_str().unwrap()];
                let (mine, other) = if d.job.payer == me {
                    (d.payable_index, d.receivable_index)
                } else {
                    (d.receivable_index, d.payable_index)
                };
                assert_eq!((&l["index_ours"], &l["index_theirs"]), (&json!(mine), &json!(other)), "{l}");
                assert_eq!(l["amount_ours_minor"], json!(d.amount_minor), "{l}");
                commits += 1;
            }
            assert_eq!(commits, done.len());
            assert_eq!(r["ours"], expected, "{}", node.brand);
            assert_eq!(r["theirs"], expected, "{}", node.brand);
        }

        // Co-signed at air's request; the same statement in both logs, with both signatures.
        let s = air
            .post_json("/v1/statements/coffee", &json!({"period": 0}))
            .await
            .unwrap()
            .ok_json("co-sign");
        assert_eq!(s["period"], json!(0));
        assert_eq!(s["statement"]["statement"], expected);
        let agreement = logged_agreement(air, AGR).await;
        assert_eq!(agreement, logged_agreement(coffee, AGR).await);
        let signed: ledger::statement::SignedStatement =
            serde_json::from_value(s["statement"].clone()).unwrap();
        signed.verify(&agreement).expect("both brands signed the statement");
        let signers: Vec<&str> = signed.signatures.iter().map(|s| s.brand.as_str()).collect();
        assert_eq!(signers, ["air", "coffee"]);
        for (node, partner) in [(air, "coffee"), (coffee, "air")] {
            let list = node
                .get(&format!("/v1/statements/{partner}"))
                .await
                .unwrap()
                .ok_json("statements");
            let list = list.as_array().unwrap();
            assert_eq!(list.len(), 1, "{}", node.brand);
            assert_eq!(list[0]["period"], json!(0));
            assert_eq!(list[0]["statement"], s["statement"], "{}", node.brand);
            let receipt: Receipt = serde_json::from_value(list[0]["receipt"].clone()).unwrap();
            let entry = receipt
                .verify(&node.log_verifier())
                .unwrap_or_else(|e| panic!("{}: {e}", node.brand))
                .entry;
            assert!(
                matches!(&entry.kind, ledger::entry::EntryKind::Statement(st) if *st == signed),
                "{}: {:?}",
                node.brand,
                entry.kind
            );
            assert!(entry.time.get() >= to, "logged after the period ended");
            // A retry, from either side, is answered with the same logged statement.
            let again = node
                .post_json(&format!("/v1/statements/{partner}"), &json!({"period": 0}))
                .await
                .unwrap()
                .ok_json("again");
            assert_eq!(again, list[0], "{}", node.brand);
        }

        // Both logs replay; each payer's clearing account holds exactly the points redeemed
        // and not refunded.
        let mut cleared = [0i128; 2];
        for d in &done {
            cleared[d.job.payer] += d.job.points as i128;
        }
        for r in &refunds {
            cleared[r.payer] -= r.points as i128;
        }
        for (p, node) in nodes.iter().enumerate() {
            let t = Instant::now();
            let accounts = replay(node).await;
            println!("{} replayed in {:.1} s", node.brand, t.elapsed().as_secs_f64());
            let clearing = format!("clearing:{}", BRANDS[1 - p]);
            assert_eq!(accounts.get(&clearing).copied(), Some(cleared[p]), "{accounts:?}");
            assert_eq!(accounts.get("held").copied().unwrap_or(0), 0, "{accounts:?}");
        }
        println!("settlement day: {:.1} s in all", started.elapsed().as_secs_f64());
        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// A signed peer request from the fake partner to `node`: `POST path` with `body` as JSON.
async fn fake_peer_post(fake: &FakePartner, node: &Node, path: &str, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    let h = fake.peer_headers(&node.brand, "POST", path, &bytes);
    send(
        h.apply(
            http_client()
                .post(format!("{}{path}", node.url))
                .header("content-type", "application/json")
                .body(bytes),
        ),
    )
    .await
    .unwrap()
}

/// What the payer answered for one redemption the fake partner committed at it.
struct Payable {
    quote: ledger::quote::Quote,
    index: u64,
    leaf_hash: ledger::entry::HexHash,
    time: u64,
}

/// The fake partner (payee) redeems `points` of alice's air points at itself through air's
/// real peer routes: a quote priced as air prices it, a hash-locked hold under `auth`, the
/// commit with the preimage. Returns air's payable.
async fn fake_redeems(
    fake: &FakePartner,
    air: &Node,
    red: &str,
    auth: &str,
    points: u64,
    card: u64,
) -> Payable {
    let quoted_at = now_ms();
    // Air's rate card: 1 cent a point; no fee.
    let quote: ledger::quote::Quote = serde_json::from_value(json!({
        "redemption": red, "agreement": "agr-gym", "payer": "air", "payee": "gym",
        "member": "alice", "points": points, "amount_minor": points, "currency": "EUR",
        "rate_card_index": card, "fee_bps": 0, "rounding": "half_even",
        "quoted_at": quoted_at, "expires_at": quoted_at + 300_000
    }))
    .unwrap();
    let preimage = [red.len() as u8; 32];
    let condition = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(preimage));
    fake_peer_post(
        fake,
        air,
        "/v1/peer/redemptions/prepare",
        // The hold ends with the quote (spec/redemption.md §3.1, payer rule 3).
        &json!({"quote": quote, "authorisation": auth, "condition": condition,
                "expires_at": quoted_at + 300_000}),
    )
    .await
    .ok_json("hold at air");
    let c = fake_peer_post(
        fake,
        air,
        &format!("/v1/peer/redemptions/{red}/commit"),
        &json!({"preimage": hex::encode(preimage), "quote": quote}),
    )
    .await
    .ok_json("commit at air");
    let receipt: Receipt = serde_json::from_value(c["payable"].clone()).unwrap();
    let entry = receipt.verify(&air.log_verifier()).unwrap().entry;
    assert!(
        matches!(&entry.kind, ledger::entry::EntryKind::Obligation(o) if o.quote == quote),
        "{:?}",
        entry.kind
    );
    Payable {
        quote,
        index: receipt.index,
        leaf_hash: ledger::entry::HexHash(ledger::merkle::leaf_hash(receipt.entry.as_bytes())),
        time: entry.time.get(),
    }
}

/// The fake partner logs a receivable for `quote`, naming a payer's entry at `index` with
/// `leaf_hash` and `time`; returns its index in the fake's log.
fn fake_receivable(
    fake: &FakePartner,
    quote: ledger::quote::Quote,
    index: u64,
    leaf_hash: ledger::entry::HexHash,
    time: u64,
) -> u64 {
    fake.append(ledger::entry::EntryKind::Obligation(
        ledger::entry::Obligation {
            side: ledger::entry::ObligationSide::Receivable,
            quote,
            counterpart: Some(ledger::entry::Counterpart {
                index: ledger::types::LogIndex::new(index).unwrap(),
                leaf_hash,
                time: ledger::types::LogTime::new(time).unwrap(),
            }),
        },
    ))
}

/// The discrepancies honest nodes cannot produce, between a real node (air, the payer) and a
/// dishonest fake partner (gym, the payee) whose signed log the test writes: four redemptions
/// committed at air through its real peer routes, against which gym logs a receivable with the
/// same amount (matched), one with another amount (`amount_differs`), one whose payer time is
/// in the next period (`cut_off`, in both periods' reports), none (`missing_theirs`), plus a
/// receivable for a redemption air never saw (`missing_ours`). Air's reconciliation reports
/// each with the entry indexes, times and amounts on both sides and both sides' statements;
/// with the period over, air refuses to co-sign (`statement_disagreed`, before asking gym) and
/// logs nothing; gym's log stays verified (no evidence, not frozen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dishonest_partners_lines_are_each_reported_and_no_statement_is_signed() {
    bounded(Duration::from_secs(180), "dishonest partner", async {
        let mut air = Node::start_new("air", FAST_FEDERATION).await;
        let gym = FakePartner::start("gym").await;
        air.pin("gym", gym.url(), &gym.verifier_key())
            .await
            .ok_json("pin gym");
        let origin = now_ms();
        let to = origin + PERIOD_MS;
        let mut t = terms("agr-gym", 0);
        t["brands"] = json!(["air", "gym"]);
        t["directions"] = json!([{"payer": "air", "payee": "gym"}]);
        t["period_origin"] = json!(origin);
        t["period_ms"] = json!(PERIOD_MS);
        let v = air
            .post_json("/v1/admin/agreements", &t)
            .await
            .unwrap()
            .ok_json("approve at air");
        assert_eq!(v["status"], json!("pending"), "{v}");
        // Gym approves by a signed peer request; air logs the co-signed agreement; so does gym.
        let terms: ledger::agreement::AgreementTerms = serde_json::from_value(t).unwrap();
        let gym_sig = ledger::agreement::sign(
            &terms,
            &"gym".parse().unwrap(),
            gym.signing_key(),
            &gym.verifier_key(),
        );
        let half = ledger::agreement::SignedAgreement {
            terms: terms.clone(),
            signatures: vec![gym_sig],
        };
        let full: ledger::agreement::SignedAgreement = serde_json::from_value(
            fake_peer_post(&gym, &air, "/v1/peer/agreements", &json!(half))
                .await
                .ok_json("gym's approval"),
        )
        .unwrap();
        assert_eq!(full.signatures.len(), 2);
        assert_eq!(full, logged_agreement(&air, "agr-gym").await);
        gym.append(ledger::entry::EntryKind::Agreement(full));

        air.client()
            .earn(
                &"alice".parse().unwrap(),
                &sdk::EarnRequest::new("e1".parse().unwrap(), sdk::Points::new(10_000).unwrap()),
            )
            .await
            .unwrap();
        let far = now_ms() + 600_000;
        for k in 1..=4 {
            air.post_json(
                "/v1/members/alice/authorisations",
                &json!({"id": format!("au-{k}"), "payee": "gym", "max_points": 1000, "expires_at": far}),
            )
            .await
            .unwrap()
            .ok_json("authorise");
        }
        let (card, valid_from) = rate_card(&air, "rc-1", "0.01").await;
        wait_until("the rate card in force", Duration::from_secs(10), || async {
            (now_ms() > valid_from + 20).then_some(()).ok_or("not yet".to_owned())
        })
        .await;

        let ok = fake_redeems(&gym, &air, "r-ok", "au-1", 100, card).await;
        let amount = fake_redeems(&gym, &air, "r-amount", "au-2", 200, card).await;
        let cut = fake_redeems(&gym, &air, "r-cut", "au-3", 300, card).await;
        let missing = fake_redeems(&gym, &air, "r-missing", "au-4", 400, card).await;
        for p in [&ok, &amount, &cut, &missing] {
            assert_eq!(p.quote.amount_minor, p.quote.points.get());
            assert!(origin <= p.time && p.time < to);
        }
        // Gym's lines: r-ok as air logged it; r-amount for 150 instead of 200; r-cut placed
        // at the first millisecond of the next period; nothing for r-missing; and r-ghost,
        // which air never held or committed.
        let g_ok = fake_receivable(&gym, ok.quote.clone(), ok.index, ok.leaf_hash, ok.time);
        let mut changed = amount.quote.clone();
        changed.amount_minor = 150;
        let g_amount = fake_receivable(&gym, changed, amount.index, amount.leaf_hash, amount.time);
        let g_cut = fake_receivable(&gym, cut.quote.clone(), cut.index, cut.leaf_hash, to);
        let mut ghost = ok.quote.clone();
        ghost.redemption = "r-ghost".parse().unwrap();
        ghost.points = sdk::Points::new(50).unwrap();
        ghost.amount_minor = 50;
        let g_ghost = fake_receivable(
            &gym,
            ghost,
            ok.index + 1000,
            ledger::entry::HexHash([7; 32]),
            ok.time + 1,
        );
        let size = gym.size();
        wait_until("air mirrors gym's log", Duration::from_secs(30), || async {
            let v = u64_field(&air.partner("gym").await?, "verified_size")?;
            (v >= size).then_some(()).ok_or(format!("verified {v} of {size}"))
        })
        .await;

        // Air's report for period 0: every discrepancy, in key order, with both sides.
        let r = reconciliation(&air, "gym", origin, to).await;
        assert_eq!(r["agreed"], json!(false));
        let row = |status: &str,
                   red: &str,
                   ours: Option<(u64, u64, i64)>,
                   theirs: Option<(u64, u64, i64)>| {
            json!({"status": status, "payer": "air", "payee": "gym", "redemption": red,
                   "refund": null,
                   "index_ours": ours.map(|o| o.0), "index_theirs": theirs.map(|t| t.0),
                   "time_ours": ours.map(|o| o.1), "time_theirs": theirs.map(|t| t.1),
                   "amount_ours_minor": ours.map(|o| o.2),
                   "amount_theirs_minor": theirs.map(|t| t.2)})
        };
        let at = |p: &Payable| Some((p.index, p.time, p.quote.amount_minor as i64));
        let expected_lines = json!([
            row("amount_differs", "r-amount", at(&amount), Some((g_amount, amount.time, 150))),
            row("cut_off", "r-cut", at(&cut), Some((g_cut, to, 300))),
            row("missing_ours", "r-ghost", None, Some((g_ghost, ok.time + 1, 50))),
            row("missing_theirs", "r-missing", at(&missing), None),
            row("matched", "r-ok", at(&ok), Some((g_ok, ok.time, 100))),
        ]);
        assert_eq!(r["lines"], expected_lines, "{r}");
        let statement = |obligations: u64, lines: u64| {
            json!({"agreement": "agr-gym", "currency": "EUR", "period": {"from": origin, "to": to},
                   "gross": [
                       {"payer": "air", "payee": "gym", "obligations_minor": obligations,
                        "refunds_minor": 0, "total_minor": obligations, "lines": lines},
                       {"payer": "gym", "payee": "air", "obligations_minor": 0,
                        "refunds_minor": 0, "total_minor": 0, "lines": 0}],
                   "net": {"payer": "air", "payee": "gym", "amount_minor": obligations},
                   "lines": lines})
        };
        assert_eq!(r["ours"], statement(100 + 200 + 300 + 400, 4));
        assert_eq!(r["theirs"], statement(100 + 150 + 50, 3));
        // The same lines as CSV.
        let csv = air
            .get(&format!("/v1/reconciliation/gym?from={origin}&to={to}&format=csv"))
            .await
            .unwrap();
        assert_eq!(csv.status, 200);
        let statuses: Vec<&str> = csv
            .text
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["amount_differs", "cut_off", "missing_ours", "missing_theirs", "matched"]
        );
        assert!(
            csv.text.contains(&format!(
                "missing_ours,air,gym,r-ghost,,,{g_ghost},,{},,50\r\n",
                ok.time + 1
            )),
            "{}",
            csv.text
        );
        // The next period's report holds the line across the boundary, from the other side.
        let next = reconciliation(&air, "gym", to, to + PERIOD_MS).await;
        assert_eq!(
            next["lines"],
            json!([row("cut_off", "r-cut", at(&cut), Some((g_cut, to, 300)))])
        );

        // No statement: first the period is open; once it ended (air's clock a day and a
        // minute ahead), the lines disagree, and air refuses before it asks gym.
        air.post_json("/v1/statements/gym", &json!({"period": 0}))
            .await
            .unwrap()
            .assert_problem(409, "period_open", "the period has not ended");
        air.stop().await;
        air.set_env("LOYALTY_CLOCK_SKEW_MS", Some(&(PERIOD_MS + 60_000).to_string()));
        air.start().await;
        let size = air.log_size().await.unwrap();
        let a = air
            .post_json("/v1/statements/gym", &json!({"period": 0}))
            .await
            .unwrap();
        a.assert_problem(409, "statement_disagreed", "the lines disagree");
        assert!(
            a.text.contains(
                "1 matched, 1 missing here, 1 missing at gym, 1 differ in amount, 1 cut off"
            ),
            "{}",
            a.text
        );
        assert_eq!(gym.request_count("POST /v1/peer/statements"), 0);
        assert_eq!(air.log_size().await.unwrap(), size, "air logged nothing");
        let listed = air.get("/v1/statements/gym").await.unwrap().ok_json("statements");
        assert_eq!(listed, json!([]));
        // The report is the same after the restart; gym's log was never refused.
        assert_eq!(reconciliation(&air, "gym", origin, to).await["lines"], expected_lines);
        assert!(air.evidence().await.unwrap().is_empty());
        let p = air.partner("gym").await.unwrap();
        assert_ne!(p["frozen"], json!(true), "{p}");
        replay(&air).await;
        air.stop().await;
    })
    .await;
}
