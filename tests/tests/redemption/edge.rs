//! Edge cases of cross-brand redemption between real nodes: both directions of one agreement,
//! authorisations that expired or name another payee or member, a hold that expires while the
//! commit is in flight at the payer, a wrong preimage, and redemption ids that collide with
//! other requests or entries.
//!
//! Every refusal is checked by its status and `code`, and by what did not change: balances,
//! pending points, holds, obligations, log sizes, and a replay of each log.

use std::collections::BTreeMap;
use std::time::Instant;

use federation_tests::fake_partner::{random_nonce, PeerHeaders};
use federation_tests::harness::{http_client, Answer};

#[allow(unused_imports)]
use super::*;

/// Terms like [`terms`], with both directions (air → coffee and coffee → air).
fn both_ways(id: &str, fee_bps: u64) -> Value {
    let mut t = terms(id, fee_bps);
    t["directions"] = json!([
        {"payer": "air", "payee": "coffee"},
        {"payer": "coffee", "payee": "air"}
    ]);
    t
}

/// Every entry of a node's log, decoded.
pub(super) async fn log_entries(node: &Node) -> Vec<Value> {
    let size = node.log_size().await.unwrap();
    let v = node
        .get(&format!("/v1/log/entries?start=0&end={size}"))
        .await
        .unwrap()
        .ok_json("log entries");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["entry"].as_str().unwrap()).unwrap())
        .collect()
}

/// The entries of type `kind` in a node's log.
pub(super) async fn entries_of(node: &Node, kind: &str) -> Vec<Value> {
    log_entries(node)
        .await
        .into_iter()
        .filter(|e| e["type"] == json!(kind))
        .collect()
}

/// A member's `(balance, pending)` at a node.
pub(super) async fn points(node: &Node, member: &str) -> (u64, u64) {
    let m = node.member_json(member).await.unwrap();
    (
        m["balance"].as_u64().unwrap_or_else(|| panic!("{m}")),
        m["pending"].as_u64().unwrap_or_else(|| panic!("{m}")),
    )
}

/// Verifies and replays a node's whole log (sdk::verify_log, against its pinned key) and
/// returns the system accounts' balances by name (`held`, `clearing:<brand>`, ...).
async fn replayed_accounts(node: &Node) -> BTreeMap<String, i128> {
    let summary = sdk::verify_log(
        &node.client(),
        &node.log_verifier(),
        sdk::VerifyOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}'s log does not verify: {e:?}", node.brand));
    summary
        .system_balances
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// A system account's balance (0 when it never moved).
fn account(accounts: &BTreeMap<String, i128>, name: &str) -> i128 {
    accounts.get(name).copied().unwrap_or(0)
}

/// Logs a spend authorisation at `node`.
pub(super) async fn authorise(
    node: &Node,
    member: &str,
    id: &str,
    payee: &str,
    max: u64,
    expires_at: u64,
) {
    node.post_json(
        &format!("/v1/members/{member}/authorisations"),
        &json!({"id": id, "payee": payee, "max_points": max, "expires_at": expires_at}),
    )
    .await
    .unwrap()
    .ok_json("authorise");
}

/// Earns points at `node` through the SDK.
async fn earn(node: &Node, member: &str, id: &str, pts: u64) {
    node.client()
        .earn(
            &member.parse().unwrap(),
            &sdk::EarnRequest::new(id.parse().unwrap(), sdk::Points::new(pts).unwrap()),
        )
        .await
        .unwrap();
}

/// `POST /v1/redemptions/quote` at the payee `node` for `points` of `payer`'s member.
pub(super) async fn quote_answer(
    node: &Node,
    red: &str,
    payer: &str,
    member: &str,
    pts: u64,
) -> Answer {
    node.post_json(
        "/v1/redemptions/quote",
        &json!({"redemption": red, "agreement": "agr-1", "payer": payer, "member": member, "points": pts}),
    )
    .await
    .unwrap()
}

/// A quote that must succeed; returns the quote object.
pub(super) async fn quote(node: &Node, red: &str, payer: &str, member: &str, pts: u64) -> Value {
    quote_answer(node, red, payer, member, pts)
        .await
        .ok_json("quote")["quote"]
        .clone()
}

/// `POST /v1/redemptions/{red}/prepare` at the payee.
async fn prepare(node: &Node, red: &str, auth: &str) -> Answer {
    node.post_json(
        &format!("/v1/redemptions/{red}/prepare"),
        &json!({"authorisation": auth}),
    )
    .await
    .unwrap()
}

/// `POST /v1/redemptions/{red}/commit` at the payee.
async fn commit(node: &Node, red: &str) -> Answer {
    node.post_json(&format!("/v1/redemptions/{red}/commit"), &json!({}))
        .await
        .unwrap()
}

/// A refusal passed on by the payee: `status partner_refused`, with the payer's `code` in
/// `partner_code`.
fn assert_refused(a: &Answer, status: u16, payer_code: &str, what: &str) {
    a.assert_problem(status, "partner_refused", what);
    let problem: Value = serde_json::from_str(&a.text).expect("a problem document");
    assert_eq!(
        problem["partner_code"].as_str(),
        Some(payer_code),
        "{what}: the payer's code is not in `partner_code`: {}",
        a.text
    );
}

/// A signed peer request from `from` to `to` (`POST path` with `body` as JSON), signed with
/// `from`'s node key read from its data directory: what `from` itself would send, with any body.
pub(super) async fn peer_post(from: &Node, to: &Node, path: &str, body: &Value) -> Answer {
    let seed = std::fs::read_to_string(from.data.join("node.key")).expect("the node's key file");
    let seed: [u8; 32] = hex::decode(seed.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let body = serde_json::to_vec(body).unwrap();
    let h = PeerHeaders::sign(
        &key,
        &from.brand,
        &to.brand,
        "POST",
        path,
        &body,
        now_ms(),
        random_nonce(),
    );
    send(
        h.apply(
            http_client()
                .post(format!("{}{path}", to.url))
                .header("content-type", "application/json")
                .body(body),
        ),
    )
    .await
    .unwrap()
}

/// 32 random bytes, hex.
fn random_hex32() -> String {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// The obligations of a node's log as `(side, payer, redemption, amount_minor)`.
async fn obligations(node: &Node) -> Vec<(String, String, String, u64)> {
    let mut v: Vec<_> = entries_of(node, "obligation")
        .await
        .iter()
        .map(|e| {
            let b = &e["body"];
            (
                b["side"].as_str().unwrap().to_owned(),
                b["quote"]["payer"].as_str().unwrap().to_owned(),
                b["quote"]["redemption"].as_str().unwrap().to_owned(),
                b["quote"]["amount_minor"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One agreement in both directions: alice's air points are redeemed at coffee and bob's
/// coffee points at air. Each payer's member balance falls and its `clearing:<partner>`
/// account rises by the points; each side holds a payable and the partner the matching
/// receivable; the two brands' net positions are additive inverses; reconciliation is `agreed`
/// on both nodes with identical statements; both logs replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_of_one_agreement_settle_as_inverse_obligations() {
    bounded(LIMIT, "both directions", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &both_ways("agr-1", 150)).await;
        earn(air, "alice", "e-alice", 5000).await;
        earn(coffee, "bob", "e-bob", 2000).await;
        let far = now_ms() + 600_000;
        authorise(air, "alice", "auth-a", "coffee", 2000, far).await;
        authorise(coffee, "bob", "auth-b", "air", 1000, far).await;
        let (_, t_air) = rate_card(air, "rc-air", "0.01").await;
        let (_, t_coffee) = rate_card(coffee, "rc-coffee", "0.02").await;
        mirrored_and_after(coffee, air, t_air).await;
        mirrored_and_after(air, coffee, t_coffee).await;

        // 1000 air points × EUR 0.01 = 1000 cents, less 1.5 %: 985.
        let qa = quote(coffee, "red-a1", "air", "alice", 1000).await;
        assert_eq!(qa["amount_minor"], json!(985), "{qa}");
        assert_eq!(
            (qa["payer"].clone(), qa["payee"].clone()),
            (json!("air"), json!("coffee"))
        );
        // 300 coffee points × EUR 0.02 = 600 cents, less 1.5 %: 591.
        let qb = quote(air, "red-b1", "coffee", "bob", 300).await;
        assert_eq!(qb["amount_minor"], json!(591), "{qb}");
        assert_eq!(
            (qb["payer"].clone(), qb["payee"].clone()),
            (json!("coffee"), json!("air"))
        );

        prepare(coffee, "red-a1", "auth-a")
            .await
            .ok_json("prepare red-a1 at coffee");
        prepare(air, "red-b1", "auth-b")
            .await
            .ok_json("prepare red-b1 at air");
        assert_eq!(points(air, "alice").await, (4000, 1000));
        assert_eq!(points(coffee, "bob").await, (1700, 300));

        let ca = commit(coffee, "red-a1").await.ok_json("commit red-a1");
        assert_eq!(ca["amount_minor"], json!(985), "{ca}");
        let cb = commit(air, "red-b1").await.ok_json("commit red-b1");
        assert_eq!(cb["amount_minor"], json!(591), "{cb}");

        // Points: each member's balance fell, nothing is held, each payer's clearing account
        // for its partner holds exactly the redeemed points (and no other clearing moved).
        assert_eq!(points(air, "alice").await, (4000, 0));
        assert_eq!(points(coffee, "bob").await, (1700, 0));
        assert_eq!(
            air.get("/v1/holds/red-a1").await.unwrap().ok_json("hold")["status"],
            json!("posted")
        );
        assert_eq!(
            coffee
                .get("/v1/holds/red-b1")
                .await
                .unwrap()
                .ok_json("hold")["status"],
            json!("posted")
        );
        let at_air = replayed_accounts(air).await;
        let at_coffee = replayed_accounts(coffee).await;
        assert_eq!(account(&at_air, "held"), 0, "{at_air:?}");
        assert_eq!(account(&at_coffee, "held"), 0, "{at_coffee:?}");
        assert_eq!(account(&at_air, "clearing:coffee"), 1000, "{at_air:?}");
        assert_eq!(account(&at_coffee, "clearing:air"), 300, "{at_coffee:?}");
        assert_eq!(account(&at_air, "clearing:air"), 0, "{at_air:?}");
        assert_eq!(account(&at_coffee, "clearing:coffee"), 0, "{at_coffee:?}");

        // Obligations: a payable at each payer, the matching receivable at each payee.
        let o_air = obligations(air).await;
        let o_coffee = obligations(coffee).await;
        let s = |a: &str, b: &str, c: &str, d: u64| (a.to_owned(), b.to_owned(), c.to_owned(), d);
        assert_eq!(
            o_air,
            vec![
                s("payable", "air", "red-a1", 985),
                s("receivable", "coffee", "red-b1", 591)
            ]
        );
        assert_eq!(
            o_coffee,
            vec![
                s("payable", "coffee", "red-b1", 591),
                s("receivable", "air", "red-a1", 985)
            ]
        );
        // Net position (receivables − payables): additive inverses.
        let net = |o: &[(String, String, String, u64)]| -> i64 {
            o.iter()
                .map(|(side, _, _, a)| {
                    if side == "receivable" {
                        *a as i64
                    } else {
                        -(*a as i64)
                    }
                })
                .sum()
        };
        assert_eq!((net(&o_air), net(&o_coffee)), (-394, 394));

        // Reconciliation from each side: two matched lines, identical statements, air owes 394.
        mirrored_and_after(air, coffee, 0).await;
        mirrored_and_after(coffee, air, 0).await;
        let to = now_ms() + 86_400_000;
        let mut statements = Vec::new();
        for (node, partner) in [(air, "coffee"), (coffee, "air")] {
            let r = node
                .get(&format!("/v1/reconciliation/{partner}?from=0&to={to}"))
                .await
                .unwrap()
                .ok_json("reconciliation");
            assert_eq!(r["agreed"], json!(true), "{}: {r}", node.brand);
            let lines = r["lines"].as_array().unwrap();
            assert_eq!(lines.len(), 2, "{r}");
            assert!(lines.iter().all(|l| l["status"] == json!("matched")), "{r}");
            let ours = &r["ours"];
            assert_eq!(ours, &r["theirs"]);
            assert_eq!(ours["lines"], json!(2));
            assert_eq!(ours["gross"][0]["payer"], json!("air"));
            assert_eq!(ours["gross"][0]["total_minor"], json!(985));
            assert_eq!(ours["gross"][1]["payer"], json!("coffee"));
            assert_eq!(ours["gross"][1]["total_minor"], json!(591));
            assert_eq!(
                ours["net"],
                json!({"amount_minor": 394, "payee": "coffee", "payer": "air"})
            );
            statements.push(ours.clone());
        }
        assert_eq!(
            statements[0], statements[1],
            "both brands compute one statement"
        );

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// Authorisations the payer must refuse between real nodes: one that expired (after the quote,
/// before the prepare), one for another payee (gym), one of another member, and one that does
/// not exist. Through the payee the refusal is `422 partner_refused` naming the payer's code;
/// sent straight to the payer as coffee's signed peer request, the payer's own status and code.
/// Nothing is held, no authorisation is used up (a valid one still redeems afterwards), and both
/// logs replay. (A used and a too-small authorisation: `prepare_holds_points_at_the_members_brand`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_misdirected_authorisations_are_refused_and_hold_nothing() {
    bounded(LIMIT, "authorisations", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-ok", 2000)]).await;
        earn(air, "bob", "e-bob", 100).await;
        let far = now_ms() + 600_000;
        let soon = now_ms() + 1500;
        authorise(air, "alice", "auth-short", "coffee", 2000, soon).await;
        authorise(air, "alice", "auth-gym", "gym", 2000, far).await;
        authorise(air, "bob", "auth-bob", "coffee", 2000, far).await;
        let mut quotes = BTreeMap::new();
        for red in ["red-1", "red-2", "red-3", "red-4", "red-5", "red-6"] {
            quotes.insert(red, quote(coffee, red, "air", "alice", 1000).await);
        }
        // Past the short authorisation's expiry (air's log time is this machine's clock).
        wait_until("auth-short expired", Duration::from_secs(10), || async {
            if now_ms() > soon + 50 {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        })
        .await;
        let air_size = air.log_size().await.unwrap();
        let before = points(air, "alice").await;
        assert_eq!(before, (5000, 0));

        // Through the payee.
        let a = prepare(coffee, "red-1", "auth-short").await;
        assert_refused(&a, 422, "authorisation_expired", "expired authorisation");
        let a = prepare(coffee, "red-2", "auth-gym").await;
        assert_refused(
            &a,
            422,
            "authorisation_wrong_payee",
            "authorisation for gym",
        );
        let a = prepare(coffee, "red-3", "auth-bob").await;
        assert_refused(
            &a,
            422,
            "authorisation_wrong_member",
            "authorisation of bob",
        );
        let a = prepare(coffee, "red-4", "auth-none").await;
        assert_refused(&a, 422, "unknown_authorisation", "no such authorisation");

        // Straight to the payer, signed by coffee: the payer's own status and code.
        let direct = |red: &str, auth: &str| {
            json!({
                "quote": quotes[red],
                "authorisation": auth,
                "condition": random_hex32(),
                "expires_at": now_ms() + 60_000,
            })
        };
        let path = "/v1/peer/redemptions/prepare";
        peer_post(coffee, air, path, &direct("red-5", "auth-short"))
            .await
            .assert_problem(409, "authorisation_expired", "expired, at the payer");
        peer_post(coffee, air, path, &direct("red-5", "auth-gym"))
            .await
            .assert_problem(422, "authorisation_wrong_payee", "gym's, at the payer");
        peer_post(coffee, air, path, &direct("red-5", "auth-bob"))
            .await
            .assert_problem(422, "authorisation_wrong_member", "bob's, at the payer");
        peer_post(coffee, air, path, &direct("red-5", "auth-none"))
            .await
            .assert_problem(404, "unknown_authorisation", "none, at the payer");

        // Nothing changed at air: no entry, no hold, no points held.
        assert_eq!(
            air.log_size().await.unwrap(),
            air_size,
            "air logged nothing"
        );
        assert_eq!(points(air, "alice").await, before);
        assert_eq!(points(air, "bob").await, (100, 0));
        for red in ["red-1", "red-2", "red-3", "red-4", "red-5"] {
            air.get(&format!("/v1/holds/{red}"))
                .await
                .unwrap()
                .assert_problem(404, "unknown_hold", red);
            coffee
                .get(&format!("/v1/redemptions/{red}/status"))
                .await
                .unwrap()
                .assert_problem(404, "unknown_redemption", red);
        }
        assert!(entries_of(air, "hold").await.is_empty());
        assert!(obligations(coffee).await.is_empty());

        // A valid authorisation still redeems: nothing was used up or left half-done.
        prepare(coffee, "red-6", "auth-ok")
            .await
            .ok_json("prepare red-6");
        let c = commit(coffee, "red-6").await.ok_json("commit red-6");
        assert_eq!(c["amount_minor"], json!(1000));
        assert_eq!(points(air, "alice").await, (4000, 0));
        let s = |a: &str, b: &str, c: &str, d: u64| (a.to_owned(), b.to_owned(), c.to_owned(), d);
        assert_eq!(
            obligations(air).await,
            vec![s("payable", "air", "red-6", 1000)]
        );
        assert_eq!(
            obligations(coffee).await,
            vec![s("receivable", "air", "red-6", 1000)]
        );
        let at_air = replayed_accounts(air).await;
        assert_eq!(account(&at_air, "held"), 0, "{at_air:?}");
        assert_eq!(account(&at_air, "clearing:coffee"), 1000, "{at_air:?}");
        replayed_accounts(coffee).await;

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// The hold expires while the commit is in flight: air (the payer) pauses after all its commit
/// checks (`LOYALTY_FAULT_DELAY=payer_commit_checked`) past the hold's expiry, so the post is
/// refused by air's log time, and with it the payable (same batch): nothing half-done. Coffee
/// answers `409 partner_refused`; air releases the hold (`voided`, with a receipt coffee
/// verifies), alice's points are back, no post and no obligation exist on either side, a retry
/// of the commit is refused the same way, and both logs replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expiring_while_the_commit_is_in_flight_commits_nothing() {
    const HOLD_MS: u64 = 3000;
    const DELAY_MS: u64 = 6000;
    bounded(LIMIT, "expiry in flight", async {
        let delay = format!("payer_commit_checked:{DELAY_MS}");
        let mut air_env: Vec<(&str, &str)> = FAST_FEDERATION.to_vec();
        air_env.push(("LOYALTY_FAULT_DELAY", delay.as_str()));
        let mut nodes = vec![
            Node::start_new("air", &air_env).await,
            Node::start_new("coffee", FAST_FEDERATION).await,
        ];
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000)]).await;
        quote(coffee, "red-1", "air", "alice", 1000).await;
        coffee
            .post_json(
                "/v1/redemptions/red-1/prepare",
                &json!({"authorisation": "auth-1", "hold_ms": HOLD_MS}),
            )
            .await
            .unwrap()
            .ok_json("prepare with a short hold");
        let hold = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold");
        assert_eq!(hold["status"], json!("open"));
        let expires_at = hold["expires_at"].as_u64().unwrap();
        assert_eq!(points(air, "alice").await, (4000, 1000));

        // The commit leaves coffee while the hold is open and unexpired ...
        let sent = now_ms();
        assert!(
            sent + 500 < expires_at,
            "the machine is too slow for this test: the hold expires at {expires_at}, now {sent}"
        );
        let started = Instant::now();
        let a = commit(coffee, "red-1").await;
        // ... and is refused after air's pause (so air passed its checks with the hold open).
        assert!(
            started.elapsed() >= Duration::from_millis(DELAY_MS - 200),
            "air did not pause in the commit: {:?} {}",
            started.elapsed(),
            a.text
        );
        a.assert_problem(409, "partner_refused", "post after the hold's expiry");
        assert!(
            a.text.contains("hold_expired") || a.text.contains("hold_not_open"),
            "{}",
            a.text
        );

        // Air released the hold at its own log time; coffee sees it, verified.
        wait_until("air released the hold", Duration::from_secs(10), || async {
            let h = air.get("/v1/holds/red-1").await?.json()?;
            if h["status"] == json!("voided") {
                Ok(())
            } else {
                Err(format!("{h}"))
            }
        })
        .await;
        let s = coffee
            .get("/v1/redemptions/red-1/status")
            .await
            .unwrap()
            .ok_json("status");
        assert_eq!(s["status"], json!("voided"), "{s}");
        let resolution: ledger::receipt::Receipt =
            serde_json::from_value(s["resolution"].clone()).unwrap();
        let v = resolution.verify(&air.log_verifier()).unwrap();
        assert_eq!(v.entry.kind.type_name(), "void");
        assert!(
            v.entry.time.get() >= expires_at,
            "released at or after the expiry"
        );

        // Nothing half-done: the points are back, no post, no obligation on either side.
        assert_eq!(points(air, "alice").await, (5000, 0));
        assert!(entries_of(air, "post").await.is_empty());
        assert!(obligations(air).await.is_empty());
        assert!(obligations(coffee).await.is_empty());
        let voids = entries_of(air, "void").await;
        assert_eq!(voids.len(), 1, "{voids:?}");
        assert_eq!(voids[0]["body"]["hold"], json!("red-1"));

        // A retry is refused the same way (at once: the hold is no longer open).
        let air_size = air.log_size().await.unwrap();
        let coffee_size = coffee.log_size().await.unwrap();
        let a = commit(coffee, "red-1").await;
        a.assert_problem(409, "partner_refused", "retry after the release");
        assert!(a.text.contains("hold_not_open"), "{}", a.text);
        assert_eq!(air.log_size().await.unwrap(), air_size);
        assert_eq!(coffee.log_size().await.unwrap(), coffee_size);
        assert_eq!(points(air, "alice").await, (5000, 0));

        let at_air = replayed_accounts(air).await;
        assert_eq!(account(&at_air, "held"), 0, "{at_air:?}");
        assert_eq!(account(&at_air, "clearing:coffee"), 0, "{at_air:?}");
        replayed_accounts(coffee).await;

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// A commit with a preimage that does not match the hold's condition, sent to air as coffee's
/// signed peer request (the real payee never sends one), is refused `422 condition_not_met`
/// and changes nothing: the hold stays open, no entry is logged, and the real commit still
/// succeeds afterwards. A commit whose quote is not the hold's is refused `quote_mismatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_preimage_is_refused_and_changes_nothing() {
    bounded(LIMIT, "wrong preimage", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000)]).await;
        let q = quote(coffee, "red-1", "air", "alice", 1000).await;
        prepare(coffee, "red-1", "auth-1").await.ok_json("prepare");
        let air_size = air.log_size().await.unwrap();
        let coffee_size = coffee.log_size().await.unwrap();
        assert_eq!(points(air, "alice").await, (4000, 1000));

        let path = "/v1/peer/redemptions/red-1/commit";
        for preimage in [random_hex32(), "00".to_owned(), "ab".repeat(64)] {
            peer_post(
                coffee,
                air,
                path,
                &json!({"preimage": preimage, "quote": q}),
            )
            .await
            .assert_problem(422, "condition_not_met", "a wrong preimage");
        }
        let mut other = q.clone();
        other["points"] = json!(999);
        peer_post(
            coffee,
            air,
            path,
            &json!({"preimage": random_hex32(), "quote": other}),
        )
        .await
        .assert_problem(422, "quote_mismatch", "another quote");

        assert_eq!(
            air.log_size().await.unwrap(),
            air_size,
            "air logged nothing"
        );
        assert_eq!(coffee.log_size().await.unwrap(), coffee_size);
        assert_eq!(points(air, "alice").await, (4000, 1000));
        let hold = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold");
        assert_eq!(hold["status"], json!("open"));
        assert!(entries_of(air, "post").await.is_empty());
        assert!(obligations(air).await.is_empty());

        // The real payee's commit still goes through, with its own preimage.
        let c = commit(coffee, "red-1").await.ok_json("the real commit");
        assert_eq!(c["amount_minor"], json!(1000));
        assert_eq!(points(air, "alice").await, (4000, 0));
        let posts = entries_of(air, "post").await;
        assert_eq!(posts.len(), 1);
        let preimage = hex::decode(posts[0]["body"]["preimage"].as_str().unwrap()).unwrap();
        let condition = entries_of(air, "hold").await[0]["body"]["condition"].clone();
        assert_eq!(
            json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                &preimage
            ))),
            condition
        );
        replayed_accounts(air).await;
        replayed_accounts(coffee).await;

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// Redemption ids reused by requests of other kinds: a second quote with other points, member
/// or agreement is `409 id_conflict` (an identical one is the same quote); a second prepare with
/// another authorisation is `409 id_conflict`; an id the payer's log already uses for another
/// entry (alice's earn) is refused by the payer (`id_conflict`, passed on as `partner_refused`);
/// an id already used by a redemption in one direction cannot name one in the other. Nothing is
/// held or used up by a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_ids_reused_by_other_requests_are_refused() {
    bounded(LIMIT, "duplicate ids", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &both_ways("agr-1", 0)).await;
        earn(air, "alice", "e1", 5000).await;
        earn(coffee, "bob", "e-bob", 1000).await;
        let far = now_ms() + 600_000;
        authorise(air, "alice", "auth-1", "coffee", 2000, far).await;
        authorise(air, "alice", "auth-2", "coffee", 2000, far).await;
        authorise(coffee, "bob", "auth-b", "air", 1000, far).await;
        let (_, t_air) = rate_card(air, "rc-air", "0.01").await;
        let (_, t_coffee) = rate_card(coffee, "rc-coffee", "0.01").await;
        mirrored_and_after(coffee, air, t_air).await;
        mirrored_and_after(air, coffee, t_coffee).await;

        // Quotes: the same request is the same quote; other terms under the id are refused.
        let first = quote_answer(coffee, "red-1", "air", "alice", 1000).await.ok_json("quote");
        let again = quote_answer(coffee, "red-1", "air", "alice", 1000).await.ok_json("again");
        assert_eq!(again["quote"], first["quote"]);
        assert_eq!(again["receipt"]["index"], first["receipt"]["index"]);
        let coffee_size = coffee.log_size().await.unwrap();
        quote_answer(coffee, "red-1", "air", "alice", 999)
            .await
            .assert_problem(409, "id_conflict", "other points");
        quote_answer(coffee, "red-1", "air", "bob", 1000)
            .await
            .assert_problem(409, "id_conflict", "another member");
        coffee
            .post_json(
                "/v1/redemptions/quote",
                &json!({"redemption": "red-1", "agreement": "agr-2", "payer": "air", "member": "alice", "points": 1000}),
            )
            .await
            .unwrap()
            .assert_problem(409, "id_conflict", "another agreement");
        assert_eq!(coffee.log_size().await.unwrap(), coffee_size, "coffee logged nothing");
        let v = coffee.get("/v1/redemptions/red-1/quote").await.unwrap().ok_json("quote");
        assert_eq!(v["quote"], first["quote"], "the logged quote is unchanged");

        // Prepare: the same redemption with another authorisation is refused, holds nothing more.
        prepare(coffee, "red-1", "auth-1").await.ok_json("prepare red-1");
        let air_size = air.log_size().await.unwrap();
        prepare(coffee, "red-1", "auth-2")
            .await
            .assert_problem(409, "id_conflict", "another authorisation");
        assert_eq!(air.log_size().await.unwrap(), air_size);
        assert_eq!(points(air, "alice").await, (4000, 1000));

        // An id air's log already uses for alice's earn: air refuses to hold under it.
        quote(coffee, "e1", "air", "alice", 500).await;
        let a = prepare(coffee, "e1", "auth-2").await;
        assert_refused(&a, 422, "id_conflict", "the id of an earn at the payer");
        assert_eq!(air.log_size().await.unwrap(), air_size, "air logged nothing");
        assert_eq!(points(air, "alice").await, (4000, 1000));
        air.get("/v1/holds/e1")
            .await
            .unwrap()
            .assert_problem(404, "unknown_hold", "no hold e1");

        // red-1 names air's hold (and coffee's quote): it cannot name bob's redemption at air.
        let air_size = air.log_size().await.unwrap();
        quote_answer(air, "red-1", "coffee", "bob", 100)
            .await
            .assert_problem(409, "id_conflict", "red-1 in the other direction");
        assert_eq!(air.log_size().await.unwrap(), air_size);

        // The refusals used nothing up: auth-2 and auth-b still redeem.
        quote(coffee, "red-2", "air", "alice", 500).await;
        prepare(coffee, "red-2", "auth-2").await.ok_json("prepare red-2");
        quote(air, "red-b1", "coffee", "bob", 100).await;
        prepare(air, "red-b1", "auth-b").await.ok_json("prepare red-b1");
        for (node, red) in [(coffee, "red-1"), (coffee, "red-2"), (air, "red-b1")] {
            commit(node, red).await.ok_json(red);
        }
        assert_eq!(points(air, "alice").await, (3500, 0));
        assert_eq!(points(coffee, "bob").await, (900, 0));
        let s = |a: &str, b: &str, c: &str, d: u64| (a.to_owned(), b.to_owned(), c.to_owned(), d);
        assert_eq!(
            obligations(air).await,
            vec![
                s("payable", "air", "red-1", 1000),
                s("payable", "air", "red-2", 500),
                s("receivable", "coffee", "red-b1", 100)
            ]
        );
        let at_air = replayed_accounts(air).await;
        assert_eq!(account(&at_air, "clearing:coffee"), 1500, "{at_air:?}");
        let at_coffee = replayed_accounts(coffee).await;
        assert_eq!(account(&at_coffee, "clearing:air"), 100, "{at_coffee:?}");

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// The points and amount of a quote answer, or the whole answer when it is not one.
fn short(a: &Answer) -> String {
    match a.json() {
        Ok(v) if v["quote"].is_object() => format!(
            "a quote of {} points for {} minor units",
            v["quote"]["points"], v["quote"]["amount_minor"]
        ),
        _ => a.text.clone(),
    }
}

/// A retried quote must be the same request: asked by price, a retry with the same price is
/// the same quote, and one with another price (or a price after a points quote) is
/// `409 id_conflict`, as for points, never a quote for other points than the app asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_retried_with_another_price_is_refused() {
    bounded(LIMIT, "price retry", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[]).await;
        let by_price = |red: &str, price: u64| {
            json!({"redemption": red, "agreement": "agr-1", "payer": "air", "member": "alice", "price_minor": price})
        };
        // 499 cents at 1 cent a point: 499 points.
        let first = coffee
            .post_json("/v1/redemptions/quote", &by_price("red-p", 499))
            .await
            .unwrap()
            .ok_json("quote by price");
        assert_eq!(first["quote"]["points"], json!(499));
        let again = coffee
            .post_json("/v1/redemptions/quote", &by_price("red-p", 499))
            .await
            .unwrap()
            .ok_json("the same price again");
        assert_eq!(again["quote"], first["quote"]);
        quote(coffee, "red-n", "air", "alice", 1000).await;
        let coffee_size = coffee.log_size().await.unwrap();

        let other_price = coffee
            .post_json("/v1/redemptions/quote", &by_price("red-p", 100))
            .await
            .unwrap();
        let price_after_points = coffee
            .post_json("/v1/redemptions/quote", &by_price("red-n", 5))
            .await
            .unwrap();
        assert_eq!(
            (
                (other_price.status, other_price.code()),
                (price_after_points.status, price_after_points.code())
            ),
            (
                (409, Some("id_conflict".to_owned())),
                (409, Some("id_conflict".to_owned()))
            ),
            "red-p asked again for 100 cents answered {} {}; red-n asked for 5 cents answered {} {}",
            other_price.status,
            short(&other_price),
            price_after_points.status,
            short(&price_after_points)
        );
        assert_eq!(coffee.log_size().await.unwrap(), coffee_size);

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}

/// Ids reserved for entries a node writes itself (`sys.`, spec/api.md) cannot name a
/// redemption, neither at the payee's quote route nor in a partner's signed prepare at the
/// payer; otherwise a partner can log a hold under `sys.release.<n>` and so block the payer's
/// release of the expired hold at index `n` (the member's points stay held). Likewise a
/// redemption id must not collide with the ids the flow derives for another redemption
/// (`post.<id>`): such a redemption is either refused (`reserved_id`) or harmless, and the
/// other redemption still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_and_derived_ids_cannot_name_a_redemption() {
    bounded(LIMIT, "reserved ids", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(
            air,
            coffee,
            5000,
            &[
                ("auth-1", 2000),
                ("auth-2", 2000),
                ("auth-3", 2000),
                ("auth-4", 2000),
            ],
        )
        .await;

        // (a) The payee's quote route.
        let a = quote_answer(coffee, "sys.q-1", "air", "alice", 10).await;
        let sys_quote = (a.status, a.code());

        // (b) A partner's signed prepare naming `sys.release.<index of red-1's hold>`.
        let q = quote(coffee, "red-1", "air", "alice", 1000).await;
        coffee
            .post_json(
                "/v1/redemptions/red-1/prepare",
                &json!({"authorisation": "auth-1", "hold_ms": 2000}),
            )
            .await
            .unwrap()
            .ok_json("prepare red-1");
        let hold = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold");
        let (index, expires_at) = (
            hold["index"].as_u64().unwrap(),
            hold["expires_at"].as_u64().unwrap(),
        );
        let mut sys = q.clone();
        sys["redemption"] = json!(format!("sys.release.{index}"));
        let a = peer_post(
            coffee,
            air,
            "/v1/peer/redemptions/prepare",
            &json!({"quote": sys, "authorisation": "auth-2", "condition": random_hex32(),
                    "expires_at": now_ms() + 600_000}),
        )
        .await;
        let sys_prepare = (a.status, a.code());
        // red-1 expires; air's housekeeping must release it.
        wait_until("past red-1's expiry", Duration::from_secs(10), || async {
            if now_ms() > expires_at + 1500 {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        })
        .await;
        let red1 = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold")["status"].clone();

        // (c) A redemption named `post.red-3` before red-3 commits.
        let a = quote_answer(coffee, "post.red-3", "air", "alice", 10).await;
        if a.status == 200 {
            let p = prepare(coffee, "post.red-3", "auth-3").await;
            assert!(
                p.status == 200
                    || p.code().as_deref() == Some("reserved_id")
                    || p.text.contains("reserved_id"),
                "{}",
                p.text
            );
        } else {
            a.assert_problem(422, "reserved_id", "a derived id");
        }
        quote(coffee, "red-3", "air", "alice", 100).await;
        prepare(coffee, "red-3", "auth-4")
            .await
            .ok_json("prepare red-3");
        let c = commit(coffee, "red-3").await;

        assert_eq!(
            (sys_quote, sys_prepare, red1, (c.status, c.code())),
            (
                (422, Some("reserved_id".to_owned())),
                (422, Some("reserved_id".to_owned())),
                json!("voided"),
                (200, None)
            ),
            "(quote sys.q-1 at coffee, signed prepare of sys.release.{index} at air, red-1 after \
             its expiry, commit of red-3 after a redemption named post.red-3); the commit said: {}",
            c.text
        );

        for n in nodes.iter_mut() {
            n.stop().await;
        }
    })
    .await;
}
