//! Multi-node tests of cross-brand redemption (spec/redemption.md), with real `loyalty-node`
//! processes on loopback. So far: agreements approved on both sides and co-signed, and quotes
//! priced from a verified mirror and locked.

use std::time::Duration;

use federation_tests::harness::{
    bounded, now_ms, pin_all, send, start_nodes, u64_field, wait_until, Node, FAST_FEDERATION,
};
use federation_tests::redemption::{agree, mirrored_and_after, rate_card, terms};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);

/// A settlement day of many redemptions in both directions, co-signed and reconciled.
#[path = "redemption/day.rs"]
mod day;
/// Edge cases of the flow between real nodes (authorisations, expiry in flight, both ways).
#[path = "redemption/edge.rs"]
mod edge;
/// A dishonest payee against the payer's rules (issue 13).
#[path = "redemption/hostile.rs"]
mod hostile;
/// Refunds across nodes and co-signed settlement statements.
#[path = "redemption/settlement.rs"]
mod settlement;

/// The `agreement` entries in a node's log, as decoded entries with their raw text.
async fn agreement_entries(node: &Node) -> Vec<(Value, String)> {
    let size = node.log_size().await.unwrap();
    let a = node
        .get(&format!("/v1/log/entries?start=0&end={size}"))
        .await
        .unwrap();
    let v = a.ok_json("log entries");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let text = e["entry"].as_str()?.to_owned();
            let decoded: Value = serde_json::from_str(&text).ok()?;
            (decoded["type"] == "agreement").then_some((decoded, text))
        })
        .collect()
}

/// Both operators approve the same terms; the second approval completes the exchange and both
/// logs hold the identical co-signed entry. Approving again changes nothing; other terms under
/// the same id are refused; a party that is not a pinned partner is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreements_are_cosigned_and_logged_on_both_sides() {
    bounded(LIMIT, "agreements", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);

        let a = air
            .post_json("/v1/admin/agreements", &terms("agr-1", 150))
            .await
            .unwrap();
        let v = a.ok_json("approve at air");
        assert_eq!(v["status"], json!("pending"), "{v}");
        assert!(agreement_entries(air).await.is_empty());

        let a = coffee
            .post_json("/v1/admin/agreements", &terms("agr-1", 150))
            .await
            .unwrap();
        let v = a.ok_json("approve at coffee");
        assert_eq!(v["status"], json!("logged"), "{v}");
        assert_eq!(v["agreement"]["signatures"].as_array().unwrap().len(), 2);

        let at_air = agreement_entries(air).await;
        let at_coffee = agreement_entries(coffee).await;
        assert_eq!(at_air.len(), 1);
        assert_eq!(at_coffee.len(), 1);
        // The same signed agreement on both sides (entry times differ, bodies do not).
        assert_eq!(at_air[0].0["body"], at_coffee[0].0["body"]);
        assert_eq!(at_air[0].0["id"], json!("agr-1"));
        let signed: ledger::agreement::SignedAgreement =
            serde_json::from_value(at_air[0].0["body"].clone()).unwrap();
        signed
            .verify(|b| {
                nodes
                    .iter()
                    .find(|n| n.brand == b.as_str())
                    .map(|n| n.log_verifier())
            })
            .expect("both signatures verify with the pinned keys");

        // Approving again: idempotent, nothing new logged.
        let a = air
            .post_json("/v1/admin/agreements", &terms("agr-1", 150))
            .await
            .unwrap();
        assert_eq!(a.ok_json("again")["status"], json!("logged"));
        assert_eq!(agreement_entries(air).await.len(), 1);
        assert_eq!(agreement_entries(coffee).await.len(), 1);

        // Other terms under an approved id are refused here, and do not get logged there.
        let a = air
            .post_json("/v1/admin/agreements", &terms("agr-1", 999))
            .await
            .unwrap();
        a.assert_problem(409, "agreement_terms_differ", "other terms, same id");
        air.post_json("/v1/admin/agreements", &terms("agr-2", 100))
            .await
            .unwrap()
            .ok_json("agr-2 at air");
        let a = coffee
            .post_json("/v1/admin/agreements", &terms("agr-2", 200))
            .await
            .unwrap();
        assert_eq!(a.ok_json("agr-2 at coffee")["status"], json!("pending"));
        assert_eq!(agreement_entries(air).await.len(), 1);
        assert_eq!(agreement_entries(coffee).await.len(), 1);

        // Terms with a brand that is not a pinned partner.
        let mut t = terms("agr-3", 0);
        t["brands"] = json!(["air", "gym"]);
        t["directions"] = json!([{"payer": "air", "payee": "gym"}]);
        let a = air.post_json("/v1/admin/agreements", &t).await.unwrap();
        a.assert_problem(422, "unknown_partner", "no such partner");
    })
    .await;
}

/// Gets a pair ready to redeem air points at coffee: alice earns `earned` at air, air logs her
/// spend authorisations for coffee (`(id, max_points)`, ten minutes), air's rate card is 0.01
/// EUR a point, and coffee's verified mirror of air holds it, in force.
async fn ready_to_redeem(air: &Node, coffee: &Node, earned: u64, auths: &[(&str, u64)]) {
    air.client()
        .earn(
            &"alice".parse().unwrap(),
            &sdk::EarnRequest::new("e1".parse().unwrap(), sdk::Points::new(earned).unwrap()),
        )
        .await
        .unwrap();
    let far = now_ms() + 600_000;
    for (id, max) in auths {
        air.post_json(
            "/v1/members/alice/authorisations",
            &json!({"id": id, "payee": "coffee", "max_points": max, "expires_at": far}),
        )
        .await
        .unwrap()
        .ok_json("authorise");
    }
    let (_, t) = rate_card(air, "rc-1", "0.01").await;
    mirrored_and_after(coffee, air, t).await;
}

/// Coffee prices air points from its verified mirror of air's log; the quote is logged and
/// locked: a later rate card changes new quotes only; it stays retrievable after it expires;
/// asking for a price gives the fewest points that cover it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_are_priced_from_the_mirror_and_locked() {
    bounded(LIMIT, "quotes", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 150)).await;
        let (card1, t1) = rate_card(air, "rc-1", "0.0125").await;
        mirrored_and_after(coffee, air, t1).await;

        let q = |redemption: &str, extra: Value| {
            let mut body = json!({"redemption": redemption, "agreement": "agr-1", "payer": "air", "member": "alice"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        // 1000 points × EUR 0.0125 = 1250 cents, less 1.5 % = 1231.25, half-even: 1231.
        let v = coffee
            .post_json("/v1/redemptions/quote", &q("red-1", json!({"points": 1000})))
            .await
            .unwrap()
            .ok_json("quote red-1");
        assert_eq!(v["quote"]["amount_minor"], json!(1231), "{v}");
        assert_eq!(v["quote"]["rate_card_index"], json!(card1));
        assert_eq!(v["quote"]["currency"], json!("EUR"));
        assert_eq!(v["live"], json!(true));
        let receipt: ledger::receipt::Receipt =
            serde_json::from_value(v["receipt"].clone()).unwrap();
        receipt.verify(&coffee.log_verifier()).expect("the quote is logged");

        // A new rate card: new quotes use it, the logged one keeps its amount.
        let (card2, t2) = rate_card(air, "rc-2", "0.02").await;
        mirrored_and_after(coffee, air, t2).await;
        let v = coffee
            .get("/v1/redemptions/red-1/quote")
            .await
            .unwrap()
            .ok_json("red-1 again");
        assert_eq!(v["quote"]["amount_minor"], json!(1231));
        // Through the SDK, which verifies the quote's receipt against coffee's pinned key.
        let a = coffee
            .client()
            .quote(&sdk::federation::QuoteRequest {
                redemption: "red-2".parse().unwrap(),
                agreement: "agr-1".parse().unwrap(),
                payer: "air".parse().unwrap(),
                member: "alice".parse().unwrap(),
                points: Some(sdk::Points::new(1000).unwrap()),
                price_minor: None,
                ttl_ms: None,
            })
            .await
            .unwrap();
        assert_eq!(a.quote.amount_minor, 1970);
        assert_eq!(a.quote.rate_card_index, card2);
        let again = coffee
            .client()
            .get_quote(&"red-2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(again.quote, a.quote);

        // A price of 499 cents at 1.97 cents a point needs 254 points (253 are worth 498.41).
        let v = coffee
            .post_json("/v1/redemptions/quote", &q("red-3", json!({"price_minor": 499})))
            .await
            .unwrap()
            .ok_json("quote red-3");
        assert_eq!(v["quote"]["points"], json!(254));
        assert_eq!(v["quote"]["amount_minor"], json!(500));

        // Expired quotes stay retrievable.
        coffee
            .post_json(
                "/v1/redemptions/quote",
                &q("red-4", json!({"points": 10, "ttl_ms": 200})),
            )
            .await
            .unwrap()
            .ok_json("quote red-4");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let v = coffee
            .get("/v1/redemptions/red-4/quote")
            .await
            .unwrap()
            .ok_json("red-4 later");
        assert_eq!(v["live"], json!(false));
        assert_eq!(v["quote"]["amount_minor"], json!(20));

        // Refusals.
        coffee
            .post_json(
                "/v1/redemptions/quote",
                &q("red-5", json!({"points": 10, "price_minor": 10})),
            )
            .await
            .unwrap()
            .assert_problem(400, "invalid_body", "points and price");
        let mut bad = q("red-6", json!({"points": 10}));
        bad["agreement"] = json!("agr-none");
        coffee
            .post_json("/v1/redemptions/quote", &bad)
            .await
            .unwrap()
            .assert_problem(404, "unknown_agreement", "no agreement");
        let mut reverse = q("red-7", json!({"points": 10}));
        reverse["payer"] = json!("coffee");
        air.post_json("/v1/redemptions/quote", &reverse)
            .await
            .unwrap()
            .assert_problem(422, "quote_direction_not_agreed", "the other direction");
        coffee
            .get("/v1/redemptions/red-none/quote")
            .await
            .unwrap()
            .assert_problem(404, "unknown_quote", "no quote");
    })
    .await;
}

/// The prepare step: coffee asks air, by a signed peer request, to hold the quoted air points
/// under the member's authorisation and a hash lock. Air re-prices the quote from its own log
/// and holds; coffee verifies air's receipt. Retrying gives the same hold; a used or too small
/// authorisation is refused by air, and the refusal is passed on with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_holds_points_at_the_members_brand() {
    bounded(LIMIT, "prepare", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000), ("auth-2", 100)]).await;
        for (red, points) in [("red-1", 1000), ("red-2", 500), ("red-3", 500)] {
            coffee
                .post_json(
                    "/v1/redemptions/quote",
                    &json!({"redemption": red, "agreement": "agr-1", "payer": "air", "member": "alice", "points": points}),
                )
                .await
                .unwrap()
                .ok_json("quote");
        }

        let v = coffee
            .post_json("/v1/redemptions/red-1/prepare", &json!({"authorisation": "auth-1"}))
            .await
            .unwrap()
            .ok_json("prepare red-1");
        let index = v["hold"]["index"].as_u64().unwrap();
        let receipt: ledger::receipt::Receipt = serde_json::from_value(v["hold"].clone()).unwrap();
        let entry = receipt.verify(&air.log_verifier()).unwrap().entry;
        assert_eq!(entry.id.as_str(), "red-1");
        let hold = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold at air");
        assert_eq!(hold["points"], json!(1000));
        assert_eq!(hold["payee"], json!("coffee"));
        assert_eq!(hold["status"], json!("open"));
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["pending"], json!(1000), "{m}");

        // A retry (through the SDK) is the same hold.
        let p = coffee
            .client()
            .prepare(&"red-1".parse().unwrap(), &"auth-1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(p.hold.index, index);

        // An authorisation is single use, and bounds the points.
        let a = coffee
            .post_json("/v1/redemptions/red-2/prepare", &json!({"authorisation": "auth-1"}))
            .await
            .unwrap();
        a.assert_problem(422, "partner_refused", "a used authorisation");
        assert!(a.text.contains("authorisation_used"), "{}", a.text);
        let a = coffee
            .post_json("/v1/redemptions/red-3/prepare", &json!({"authorisation": "auth-2"}))
            .await
            .unwrap();
        a.assert_problem(422, "partner_refused", "too few points authorised");
        assert!(a.text.contains("authorisation_exceeded"), "{}", a.text);
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["pending"], json!(1000), "nothing more held: {m}");
        coffee
            .post_json("/v1/redemptions/red-9/prepare", &json!({"authorisation": "auth-1"}))
            .await
            .unwrap()
            .assert_problem(404, "unknown_quote", "no quote");

        // Status and void, decided by air's log and verified by coffee against air's key.
        let s = coffee
            .get("/v1/redemptions/red-1/status")
            .await
            .unwrap()
            .ok_json("status");
        assert_eq!(s["status"], json!("open"), "{s}");
        assert_eq!(s["hold"]["index"], json!(index));
        let s = coffee
            .post_json("/v1/redemptions/red-1/void", &json!({}))
            .await
            .unwrap()
            .ok_json("void");
        assert_eq!(s["status"], json!("voided"), "{s}");
        let resolution: ledger::receipt::Receipt =
            serde_json::from_value(s["resolution"].clone()).unwrap();
        let v = resolution.verify(&air.log_verifier()).unwrap();
        assert_eq!(v.entry.kind.type_name(), "void");
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["pending"], json!(0), "released: {m}");
        let s = coffee
            .post_json("/v1/redemptions/red-1/void", &json!({}))
            .await
            .unwrap()
            .ok_json("void again");
        assert_eq!(s["status"], json!("voided"));
        coffee
            .get("/v1/redemptions/red-2/status")
            .await
            .unwrap()
            .assert_problem(404, "unknown_redemption", "never held");
    })
    .await;
}

/// The commit: coffee reveals its preimage; air posts the hold and logs the payable in one
/// batch; coffee verifies air's receipts and logs the receivable naming air's entry. Retrying
/// is idempotent; a commit beyond the agreement's credit limit is refused and leaves the hold
/// open (nothing half-done), so it can be voided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_logs_obligations_on_both_sides_within_the_credit_limit() {
    bounded(LIMIT, "commit", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        let mut t = terms("agr-1", 0);
        t["credit_limit_minor"] = json!(1500);
        agree(air, coffee, &t).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000), ("auth-2", 2000)]).await;
        for (red, auth) in [("red-1", "auth-1"), ("red-2", "auth-2")] {
            coffee
                .post_json(
                    "/v1/redemptions/quote",
                    &json!({"redemption": red, "agreement": "agr-1", "payer": "air", "member": "alice", "points": 1000}),
                )
                .await
                .unwrap()
                .ok_json("quote");
            coffee
                .post_json(&format!("/v1/redemptions/{red}/prepare"), &json!({"authorisation": auth}))
                .await
                .unwrap()
                .ok_json("prepare");
        }
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["pending"], json!(2000), "{m}");

        let c = coffee
            .post_json("/v1/redemptions/red-1/commit", &json!({}))
            .await
            .unwrap()
            .ok_json("commit red-1");
        assert_eq!(c["amount_minor"], json!(1000), "{c}");
        let payable: ledger::receipt::Receipt =
            serde_json::from_value(c["payer"]["payable"].clone()).unwrap();
        let p = payable.verify(&air.log_verifier()).unwrap().entry;
        assert_eq!(p.kind.type_name(), "obligation");
        let receivable: ledger::receipt::Receipt =
            serde_json::from_value(c["receivable"].clone()).unwrap();
        let r = receivable.verify(&coffee.log_verifier()).unwrap().entry;
        match &r.kind {
            sdk::EntryKind::Obligation(o) => {
                let cp = o.counterpart.as_ref().expect("a receivable names the payable");
                assert_eq!(cp.index.get(), payable.index);
                assert_eq!(
                    cp.leaf_hash.0,
                    ledger::merkle::leaf_hash(payable.entry.as_bytes())
                );
            }
            other => panic!("not an obligation: {other:?}"),
        }
        // Held points leave the lots at once; the commit settles them (balance + pending fall).
        let m = air.member_json("alice").await.unwrap();
        assert_eq!((m["balance"].clone(), m["pending"].clone()), (json!(3000), json!(1000)), "{m}");
        let s = coffee.get("/v1/redemptions/red-1/status").await.unwrap().ok_json("status");
        assert_eq!(s["status"], json!("posted"));

        // Retrying gives the same receipts and logs nothing new.
        let again = coffee
            .post_json("/v1/redemptions/red-1/commit", &json!({}))
            .await
            .unwrap()
            .ok_json("commit again");
        assert_eq!(again["payer"]["payable"]["index"], c["payer"]["payable"]["index"]);
        assert_eq!(again["receivable"]["index"], c["receivable"]["index"]);

        // 1000 + 1000 > 1500: refused, and the hold stays open.
        let a = coffee
            .post_json("/v1/redemptions/red-2/commit", &json!({}))
            .await
            .unwrap();
        a.assert_problem(409, "partner_refused", "over the credit limit");
        assert!(a.text.contains("credit_limit_exceeded"), "{}", a.text);
        let s = coffee.get("/v1/redemptions/red-2/status").await.unwrap().ok_json("status");
        assert_eq!(s["status"], json!("open"));
        let s = coffee
            .post_json("/v1/redemptions/red-2/void", &json!({}))
            .await
            .unwrap()
            .ok_json("void red-2");
        assert_eq!(s["status"], json!("voided"));
        let m = air.member_json("alice").await.unwrap();
        assert_eq!((m["balance"].clone(), m["pending"].clone()), (json!(4000), json!(0)), "{m}");
        // A voided redemption cannot be committed.
        coffee
            .post_json("/v1/redemptions/red-2/commit", &json!({}))
            .await
            .unwrap()
            .assert_problem(409, "partner_refused", "voided");

        // Reconciliation from each side's own log and verified mirror of the other: one line,
        // matched, and statements in which air owes coffee 1000 cents.
        mirrored_and_after(coffee, air, 0).await;
        mirrored_and_after(air, coffee, 0).await;
        let to = now_ms() + 86_400_000;
        for (node, partner) in [(air, "coffee"), (coffee, "air")] {
            let r = node
                .get(&format!("/v1/reconciliation/{partner}?from=0&to={to}"))
                .await
                .unwrap()
                .ok_json("reconciliation");
            assert_eq!(r["agreed"], json!(true), "{r}");
            let lines = r["lines"].as_array().unwrap();
            assert_eq!(lines.len(), 1, "{r}");
            assert_eq!(lines[0]["status"], json!("matched"));
            assert_eq!(r["ours"]["net"]["payer"], json!("air"));
            assert_eq!(r["ours"]["net"]["payee"], json!("coffee"));
            assert_eq!(r["ours"]["net"]["amount_minor"], json!(1000));
            assert_eq!(r["ours"], r["theirs"]);
        }
        let a = air
            .get(&format!("/v1/reconciliation/coffee?from=0&to={to}&format=csv"))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert!(a.text.lines().count() == 2 && a.text.contains("matched"), "{}", a.text);
        // A period before the commit holds nothing.
        let r = air
            .get("/v1/reconciliation/coffee?from=0&to=1000")
            .await
            .unwrap()
            .ok_json("empty period");
        assert_eq!(r["lines"], json!([]));
    })
    .await;
}

/// The SDK's `redeem_at_partner` runs quote, prepare and commit; an app that stopped after
/// prepare (a crash) resumes with the same request and completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_at_partner_through_the_sdk_resumes_after_a_stop() {
    bounded(LIMIT, "redeem_at_partner", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000), ("auth-2", 2000)]).await;
        let app = coffee.client();
        let req = |red: &str, auth: &str| sdk::federation::RedeemAtPartner {
            redemption: red.parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(700).unwrap()),
            price_minor: None,
            authorisation: auth.parse().unwrap(),
        };
        let done = app
            .redeem_at_partner(&req("red-1", "auth-1"))
            .await
            .unwrap();
        assert_eq!(done.amount_minor, 700);
        let again = app
            .redeem_at_partner(&req("red-1", "auth-1"))
            .await
            .unwrap();
        assert_eq!(again, done, "idempotent");

        // The app stops after prepare; running the whole flow again completes it once.
        app.quote(&sdk::federation::QuoteRequest {
            redemption: "red-2".parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(700).unwrap()),
            price_minor: None,
            ttl_ms: None,
        })
        .await
        .unwrap();
        app.prepare(&"red-2".parse().unwrap(), &"auth-2".parse().unwrap())
            .await
            .unwrap();
        let s = app
            .redemption_status(&"red-2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(s.status, "open");
        let done2 = app
            .redeem_at_partner(&req("red-2", "auth-2"))
            .await
            .unwrap();
        assert_eq!(done2.amount_minor, 700);
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(
            (m["balance"].clone(), m["pending"].clone()),
            (json!(3600), json!(0)),
            "{m}"
        );

        mirrored_and_after(air, coffee, 0).await;
        mirrored_and_after(coffee, air, 0).await;
        let r = app
            .reconciliation(&"air".parse().unwrap(), None, 0, now_ms() + 86_400_000)
            .await
            .unwrap();
        assert!(r.agreed);
        assert_eq!(r.lines.len(), 2);
    })
    .await;
}

/// The `loyalty` binary next to this test executable (`cargo test --workspace` builds it).
fn loyalty_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join(format!("loyalty{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no loyalty binary at {}: `cargo test --workspace` builds it",
        bin.display()
    );
    bin
}

/// Runs `loyalty --node <node> --key <admin key> --log-key <key> --json ARGS`: (exit code,
/// stdout as JSON or null, stderr).
async fn loyalty_cli(node: &Node, args: &[&str]) -> (i32, Value, String) {
    let out = tokio::process::Command::new(loyalty_bin())
        .args([
            "--node",
            &node.url,
            "--key",
            &node.admin_key,
            "--log-key",
            &node.verifier_key,
            "--json",
        ])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `loyalty` CLI's `redeem-at-partner` and `refund-at-partner`: a redemption stopped after
/// prepare is resumed by the command with the same `--redemption` and completes once; running
/// either command again answers the same; a refund beyond what is left is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_redeems_and_refunds_at_a_partner_and_resumes() {
    bounded(LIMIT, "cli", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 2000)]).await;
        // An app stopped after prepare: the points are held at air.
        let app = coffee.client();
        app.quote(&sdk::federation::QuoteRequest {
            redemption: "red-cli".parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(700).unwrap()),
            price_minor: None,
            ttl_ms: None,
        })
        .await
        .unwrap();
        app.prepare(&"red-cli".parse().unwrap(), &"auth-1".parse().unwrap())
            .await
            .unwrap();

        let redeem = [
            "redeem-at-partner",
            "--payer",
            "air",
            "--agreement",
            "agr-1",
            "--member",
            "alice",
            "--authorisation",
            "auth-1",
            "--points",
            "700",
            "--redemption",
            "red-cli",
        ];
        let (code, done, err) = loyalty_cli(coffee, &redeem).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(done["redemption"], json!("red-cli"), "{done}");
        assert_eq!(done["amount_minor"], json!(700), "{done}");
        let (code, again, err) = loyalty_cli(coffee, &redeem).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(again, done, "the same redemption, answered again");
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(
            (&m["balance"], &m["pending"]),
            (&json!(4300), &json!(0)),
            "{m}"
        );

        let refund = ["refund-at-partner", "red-cli", "200", "--refund", "rf-cli"];
        let (code, r, err) = loyalty_cli(coffee, &refund).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            (&r["points"], &r["refunded_points"]),
            (&json!(200), &json!(200)),
            "{r}"
        );
        let (code, r2, err) = loyalty_cli(coffee, &refund).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(r2, r, "the same refund, answered again");
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["balance"], json!(4500), "{m}");

        // Beyond what is left (500): refused, exit status 2, nothing changes.
        let (code, _, err) = loyalty_cli(
            coffee,
            &["refund-at-partner", "red-cli", "501", "--refund", "rf-2"],
        )
        .await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("refund_exceeds_obligation"), "{err}");
        // Without --refund, the command makes an id and prints it first, for a resume.
        let (code, r3, err) = loyalty_cli(coffee, &["refund-at-partner", "red-cli", "100"]).await;
        assert_eq!(code, 0, "{err}");
        let made = r3["refund"].as_str().unwrap();
        assert!(err.contains(&format!("--refund {made}")), "{err}");
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["balance"], json!(4600), "{m}");
    })
    .await;
}

/// `sdk/examples/redeem_at_partner.rs` runs against two real nodes and redeems end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_app_redeems_end_to_end() {
    bounded(LIMIT, "example", async {
        let exe = std::env::current_exe().unwrap();
        let example = exe
            .parent()
            .and_then(|d| d.parent())
            .unwrap()
            .join("examples")
            .join(format!("redeem_at_partner{}", std::env::consts::EXE_SUFFIX));
        if !example.is_file() {
            panic!(
                "no example binary at {}: `cargo test --workspace` builds it",
                example.display()
            );
        }
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 5000, &[]).await;
        let out = tokio::process::Command::new(&example)
            .args([
                "air",
                &air.url,
                &air.admin_key,
                "coffee",
                &coffee.url,
                &coffee.admin_key,
                &coffee.verifier_key,
                "agr-1",
                "alice",
                "1200",
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("air owes coffee 1200 minor units of EUR"),
            "{text}"
        );
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["balance"], json!(3800), "{m}");
    })
    .await;
}

/// Kill -9 of either node at every step of the flow (LOYALTY_FAULT aborts the process at a
/// named point, right after what it wrote is durable and before it answers), then restart and
/// resume with the same request: the redemption completes exactly once, no point is lost or
/// created, and the two brands' obligations match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_either_node_at_every_step_is_recovered_exactly_once() {
    // (crashing node: 0 = air (payer), 1 = coffee (payee), fault point)
    const POINTS: [(usize, &str); 4] = [
        (1, "payee_secret_stored"),
        (0, "payer_hold_logged"),
        (0, "payer_commit_logged"),
        (1, "payee_commit_answered"),
    ];
    bounded(Duration::from_secs(240), "crashes", async {
        for (victim, point) in POINTS {
            let mut nodes = Vec::new();
            for (i, brand) in ["air", "coffee"].iter().enumerate() {
                let mut env: Vec<(&str, &str)> = FAST_FEDERATION.to_vec();
                if i == victim {
                    env.push(("LOYALTY_FAULT", point));
                }
                nodes.push(Node::start_new(brand, &env).await);
            }
            pin_all(&nodes).await;
            agree(&nodes[0], &nodes[1], &terms("agr-1", 0)).await;
            ready_to_redeem(&nodes[0], &nodes[1], 5000, &[("auth-1", 2000)]).await;
            let req = sdk::federation::RedeemAtPartner {
                redemption: "red-1".parse().unwrap(),
                agreement: "agr-1".parse().unwrap(),
                payer: "air".parse().unwrap(),
                member: "alice".parse().unwrap(),
                points: Some(sdk::Points::new(1000).unwrap()),
                price_minor: None,
                authorisation: "auth-1".parse().unwrap(),
            };
            let first = nodes[1].writer_client().redeem_at_partner(&req).await;
            assert!(first.is_err(), "{point}: the crash interrupts the flow");
            // The victim is dead; restart it without the fault and resume.
            let v = &mut nodes[victim];
            v.kill9();
            v.set_env("LOYALTY_FAULT", None);
            v.start().await;
            let done = nodes[1]
                .client()
                .redeem_at_partner(&req)
                .await
                .unwrap_or_else(|e| panic!("{point}: resuming failed: {e}"));
            assert_eq!(done.amount_minor, 1000, "{point}");
            let again = nodes[1].client().redeem_at_partner(&req).await.unwrap();
            assert_eq!(again, done, "{point}: exactly once");
            let (air, coffee) = (&nodes[0], &nodes[1]);
            // Points: 1000 left alice once; nothing is held any more.
            let m = air.member_json("alice").await.unwrap();
            assert_eq!(
                (m["balance"].clone(), m["pending"].clone()),
                (json!(4000), json!(0)),
                "{point}: {m}"
            );
            let hold = air.get("/v1/holds/red-1").await.unwrap().ok_json("hold");
            assert_eq!(hold["status"], json!("posted"), "{point}");
            // Obligations: one payable at air, one receivable at coffee, matching.
            mirrored_and_after(air, coffee, 0).await;
            mirrored_and_after(coffee, air, 0).await;
            for (node, partner) in [(air, "coffee"), (coffee, "air")] {
                let r = node
                    .get(&format!(
                        "/v1/reconciliation/{partner}?from=0&to={}",
                        now_ms() + 86_400_000
                    ))
                    .await
                    .unwrap()
                    .ok_json("reconciliation");
                assert_eq!(r["agreed"], json!(true), "{point}: {r}");
                assert_eq!(r["lines"].as_array().unwrap().len(), 1, "{point}: {r}");
                assert_eq!(r["ours"]["net"]["amount_minor"], json!(1000), "{point}");
            }
            // Every log still replays.
            for n in [air, coffee] {
                let summary = sdk::verify_log(
                    &n.client(),
                    &n.log_verifier(),
                    sdk::VerifyOptions::default(),
                )
                .await;
                assert!(
                    summary.is_ok(),
                    "{point}: {} does not verify: {summary:?}",
                    n.brand
                );
            }
        }
    })
    .await;
}

/// Races and retries: concurrent requests with one redemption id commit once; a rate change
/// after the quote leaves the locked amount; a commit racing a void ends exactly one way; an
/// expired quote cannot be prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_rate_changes_and_races_resolve_once() {
    bounded(LIMIT, "races", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        ready_to_redeem(air, coffee, 9000, &[("auth-1", 2000), ("auth-2", 2000), ("auth-3", 2000), ("auth-4", 2000)]).await;
        let req = |red: &str, auth: &str| sdk::federation::RedeemAtPartner {
            redemption: red.parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(1000).unwrap()),
            price_minor: None,
            authorisation: auth.parse().unwrap(),
        };

        // Four concurrent runs of one redemption: one commit, four identical answers.
        let mut runs = Vec::new();
        for _ in 0..4 {
            let c = coffee.client();
            let r = req("red-1", "auth-1");
            runs.push(tokio::spawn(async move { c.redeem_at_partner(&r).await }));
        }
        let mut answers = Vec::new();
        for r in runs {
            answers.push(r.await.unwrap().expect("every duplicate succeeds"));
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]));
        let m = air.member_json("alice").await.unwrap();
        assert_eq!(m["balance"], json!(8000), "one redemption of 1000: {m}");

        // Quoted at 0.01; the rate doubles before the commit; the locked amount applies.
        let app = coffee.client();
        app.quote(&sdk::federation::QuoteRequest {
            redemption: "red-2".parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(1000).unwrap()),
            price_minor: None,
            ttl_ms: Some(120_000),
        })
        .await
        .unwrap();
        let (_, t1) = rate_card(air, "rc-2", "0.02").await;
        mirrored_and_after(coffee, air, t1).await;
        let done = app.redeem_at_partner(&req("red-2", "auth-2")).await.unwrap();
        assert_eq!(done.amount_minor, 1000, "the quote's locked rate");

        // A commit racing a void: exactly one wins, and the state says which.
        app.quote(&sdk::federation::QuoteRequest {
            redemption: "red-3".parse().unwrap(),
            agreement: "agr-1".parse().unwrap(),
            payer: "air".parse().unwrap(),
            member: "alice".parse().unwrap(),
            points: Some(sdk::Points::new(1000).unwrap()),
            price_minor: None,
            ttl_ms: None,
        })
        .await
        .unwrap();
        app.prepare(&"red-3".parse().unwrap(), &"auth-3".parse().unwrap())
            .await
            .unwrap();
        let red3: sdk::EntryId = "red-3".parse().unwrap();
        let (c1, c2) = (coffee.writer_client(), coffee.writer_client());
        let (r3, v3) = (red3.clone(), red3.clone());
        let (commit, void) = tokio::join!(
            async move { c1.commit(&r3).await },
            async move { c2.void_redemption(&v3).await }
        );
        let status = app.redemption_status(&red3).await.unwrap();
        match (commit.is_ok(), void.is_ok()) {
            (true, false) => assert_eq!(status.status, "posted"),
            (false, true) => assert_eq!(status.status, "voided"),
            other => panic!("commit {:?} / void {:?}: {other:?}", commit, void),
        }
        let expected = if status.status == "posted" { 6000 } else { 7000 };
        let m = air.member_json("alice").await.unwrap();
        assert_eq!((m["balance"].clone(), m["pending"].clone()), (json!(expected), json!(0)), "{m}");

        // An expired quote cannot be prepared.
        coffee
            .post_json(
                "/v1/redemptions/quote",
                &json!({"redemption": "red-4", "agreement": "agr-1", "payer": "air", "member": "alice", "points": 10, "ttl_ms": 100}),
            )
            .await
            .unwrap()
            .ok_json("short quote");
        tokio::time::sleep(Duration::from_millis(200)).await;
        coffee
            .post_json("/v1/redemptions/red-4/prepare", &json!({"authorisation": "auth-4"}))
            .await
            .unwrap()
            .assert_problem(409, "quote_expired", "expired quote");
    })
    .await;
}
