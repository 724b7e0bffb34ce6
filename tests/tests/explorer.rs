//! The explorer in a real browser: two brands with an agreement, a cross-brand redemption with
//! a refund in a settled (co-signed) period and another one still open, and a member's open
//! hold; a headless Chromium (Debian's, through chromedriver) opens the payer's explorer,
//! navigates by clicking log → entry → member → partners → partner → settlement, and every
//! page's numbers are checked against the JSON API. A PNG screenshot of each page is saved to
//! `<target>/test-artifacts/explorer/` (or `$LOYALTY_ARTIFACTS_DIR`).
//!
//! Without Chromium and chromedriver the test fails, saying what to install.

use std::path::Path;
use std::time::Duration;

use federation_tests::browser::{artifacts_dir, Browser};
use federation_tests::harness::{
    bounded, http_client, now_ms, pin_all, send, start_nodes, u64_field, wait_until, Node,
    FAST_FEDERATION,
};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(240);
/// Settlement periods short enough that one ends during the test.
const PERIOD_MS: u64 = 4_000;

fn id(s: &str) -> sdk::EntryId {
    s.parse().unwrap()
}

fn brand(s: &str) -> sdk::BrandId {
    s.parse().unwrap()
}

/// Air's points are redeemed at coffee, settled in EUR every [`PERIOD_MS`] from `origin`.
fn terms(origin: u64) -> Value {
    json!({
        "agreement": "agr-1",
        "brands": ["air", "coffee"],
        "directions": [{"payer": "air", "payee": "coffee"}],
        "settlement_currency": "EUR",
        "fx_source": "air",
        "fee_bps": 0,
        "credit_limit_minor": 1_000_000,
        "period_ms": PERIOD_MS,
        "period_origin": origin,
        "rounding": "half_even",
        "valid_from": 0
    })
}

/// Approves `terms` on both nodes (the second approval logs it on both).
async fn agree(a: &Node, b: &Node, terms: &Value) {
    a.post_json("/v1/admin/agreements", terms)
        .await
        .unwrap()
        .ok_json("approve at a");
    let v = b
        .post_json("/v1/admin/agreements", terms)
        .await
        .unwrap()
        .ok_json("approve at b");
    assert_eq!(v["status"], json!("logged"), "{v}");
}

/// Waits until `node` mirrors all of `origin`'s log and the clock passed `t`.
async fn mirrored_and_after(node: &Node, origin: &Node, t: u64) {
    let size = origin.log_size().await.unwrap();
    wait_until("mirror caught up", Duration::from_secs(30), || async {
        let p = node.partner(&origin.brand).await?;
        let v = u64_field(&p, "verified_size")?;
        if v >= size && now_ms() > t + 20 {
            Ok(())
        } else {
            Err(format!("verified {v} of {size}"))
        }
    })
    .await;
}

fn redeem_req(red: &str, auth: &str, points: u64) -> sdk::federation::RedeemAtPartner {
    sdk::federation::RedeemAtPartner {
        redemption: id(red),
        agreement: id("agr-1"),
        payer: brand("air"),
        member: "alice".parse().unwrap(),
        points: Some(sdk::Points::new(points).unwrap()),
        price_minor: None,
        authorisation: id(auth),
    }
}

/// Air and coffee with an agreement; alice (air) redeemed 400 points at coffee, 100 of them
/// refunded, in a period whose statement both co-signed; then 300 more in a later, open
/// period; bob (air) has an open hold. Returns when both mirrors are complete and air's latest
/// checkpoint is cosigned.
async fn set_up(air: &Node, coffee: &Node) {
    let origin = now_ms() / PERIOD_MS * PERIOD_MS;
    agree(air, coffee, &terms(origin)).await;
    let far = now_ms() + 600_000;
    let c = air.client();
    for (e, member, points) in [("e1", "alice", 5000), ("e2", "bob", 800)] {
        c.earn(
            &member.parse().unwrap(),
            &sdk::EarnRequest::new(id(e), sdk::Points::new(points).unwrap()),
        )
        .await
        .unwrap();
    }
    air.post_json(
        "/v1/members/bob/holds",
        &json!({"id": "hold-bob", "points": 200, "expires_at": far}),
    )
    .await
    .unwrap()
    .ok_json("bob's hold");
    for auth in ["auth-1", "auth-2"] {
        air.post_json(
            "/v1/members/alice/authorisations",
            &json!({"id": auth, "payee": "coffee", "max_points": 1000, "expires_at": far}),
        )
        .await
        .unwrap()
        .ok_json("authorise");
    }
    let valid_from = now_ms() + 300;
    send(
        http_client()
            .put(format!("{}/v1/policy/rate-card", air.url))
            .bearer_auth(&air.admin_key)
            .json(&json!({"id": "rc-1", "currency": "EUR", "point_value": "0.01", "valid_from": valid_from})),
    )
    .await
    .unwrap()
    .ok_json("rate card");
    mirrored_and_after(coffee, air, valid_from).await;

    let app = coffee.client();
    let first = app
        .redeem_at_partner(&redeem_req("red-1", "auth-1", 400))
        .await
        .unwrap();
    assert_eq!(first.amount_minor, 400);
    app.refund_at_partner(
        &id("red-1"),
        &sdk::federation::RefundRequest {
            refund: id("rf-1"),
            points: sdk::Points::new(100).unwrap(),
        },
    )
    .await
    .unwrap();
    let t1 = first
        .payer
        .payable
        .verify(&air.log_verifier())
        .unwrap()
        .entry
        .time
        .get();
    let k = (t1 - origin) / PERIOD_MS;
    let end = origin + (k + 1) * PERIOD_MS;
    wait_until("the period ends", Duration::from_secs(20), || async {
        (now_ms() > end + 50)
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    mirrored_and_after(air, coffee, 0).await;
    mirrored_and_after(coffee, air, 0).await;
    app.statement(&brand("air"), None, k).await.unwrap();
    app.redeem_at_partner(&redeem_req("red-2", "auth-2", 300))
        .await
        .unwrap();
    mirrored_and_after(air, coffee, 0).await;
    mirrored_and_after(coffee, air, 0).await;
    let size = air.log_size().await.unwrap();
    wait_until(
        "air's checkpoint cosigned",
        Duration::from_secs(30),
        || async {
            let v = air.get("/v1/checkpoint/cosigned").await?.json()?;
            let n = v["cosigners"].as_array().map_or(0, Vec::len);
            if u64_field(&v, "size")? >= size && n > 0 {
                Ok(())
            } else {
                Err(format!("cosigned {v}"))
            }
        },
    )
    .await;
}

/// `1234567` as the explorer shows it: `1,234,567`.
fn grouped(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A dataset value as a number.
fn num(v: &Value, key: &str) -> i64 {
    v[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// A dataset value as text.
fn txt<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key:?} in {v}"))
}

/// The entries of a node's log `[start, end)`, decoded.
async fn entries(node: &Node, start: u64, end: u64) -> Vec<(u64, Value)> {
    let v = node
        .get(&format!("/v1/log/entries?start={start}&end={end}"))
        .await
        .unwrap()
        .ok_json("log entries");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                serde_json::from_str(e["entry"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Checks that the page is `page` and saves its screenshot as `<n>-<page>.png`.
async fn shot(b: &Browser, dir: &Path, n: u32, page: &str) {
    let main = b.find("main#page").await;
    assert_eq!(
        b.attr(&main, "data-page").await.as_deref(),
        Some(page),
        "at {}",
        b.url().await
    );
    b.screenshot(&dir.join(format!("{n:02}-{page}.png"))).await;
}

/// Every entry row of the page shows a proof verified in the checkpoint of `size`.
async fn all_verified(b: &Browser, size: u64) -> usize {
    let rows = b.datasets("tr[data-index]").await;
    let proofs = b.datasets("tr[data-index] .proof").await;
    assert_eq!(rows.len(), proofs.len(), "every row shows its proof status");
    for p in &proofs {
        assert_eq!(txt(p, "proof"), "verified", "{p}");
        assert_eq!(num(p, "proofSize") as u64, size, "{p}");
    }
    rows.len()
}

/// Air's explorer, page by page, against air's API; then coffee's settlement page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_shows_in_a_browser_what_the_api_serves() {
    // First, so that a machine without Chromium fails at once and says why.
    let browser = Browser::start().await;
    let dir = artifacts_dir(env!("CARGO_TARGET_TMPDIR"), "explorer");
    bounded(LIMIT, "explorer", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        set_up(air, coffee).await;
        let b = &browser;
        let size = air.log_size().await.unwrap();

        // The overview.
        b.goto(&format!("{}/explorer", air.url)).await;
        shot(b, &dir, 1, "home").await;
        let s = b.find("#size").await;
        assert_eq!(b.must_attr(&s, "data-size").await, size.to_string());
        assert_eq!(b.text(&s).await, grouped(size));
        assert_eq!(
            b.text(&b.find("#verifier-key").await).await,
            air.verifier_key
        );
        all_verified(b, size).await;

        // The log, newest first: the latest entries, as /v1/log/entries has them.
        b.follow(&b.find("nav a[href=\"/explorer/log\"]").await)
            .await;
        shot(b, &dir, 2, "log").await;
        let rows = b.datasets("tr[data-index]").await;
        let lo = size.saturating_sub(50);
        let api = entries(air, lo, size).await;
        assert_eq!(rows.len(), api.len());
        for (row, (i, e)) in rows.iter().zip(api.iter().rev()) {
            assert_eq!(num(row, "index") as u64, *i);
            assert_eq!(txt(row, "type"), e["type"].as_str().unwrap());
        }
        all_verified(b, size).await;
        let all = entries(air, 0, size).await;

        // Search by member, with the form: alice's history.
        b.type_text(&b.find("input[name=member]").await, "alice")
            .await;
        b.follow(&b.find("form.filters button").await).await;
        shot(b, &dir, 3, "log").await;
        assert!(b.url().await.contains("member=alice"), "{}", b.url().await);
        let history = air
            .get("/v1/members/alice/history")
            .await
            .unwrap()
            .ok_json("alice's history");
        let alice_history: Vec<i64> = history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_i64().unwrap())
            .collect();
        let got: Vec<i64> = b
            .datasets("tr[data-index]")
            .await
            .iter()
            .map(|r| num(r, "index"))
            .collect();
        assert_eq!(got, alice_history, "alice's entries, in log order");
        all_verified(b, size).await;

        // Search by type, by URL: every obligation entry and nothing else.
        b.goto(&format!("{}/explorer/log?type=obligation", air.url))
            .await;
        let got: Vec<i64> = b
            .datasets("tr[data-index]")
            .await
            .iter()
            .map(|r| {
                assert_eq!(txt(r, "type"), "obligation");
                num(r, "index")
            })
            .collect();
        let want: Vec<i64> = all
            .iter()
            .rev()
            .filter(|(_, e)| e["type"] == "obligation")
            .map(|(i, _)| *i as i64)
            .collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), 2, "red-1 and red-2");

        // Log → entry: alice's earn, from her search results.
        b.goto(&format!("{}/explorer/log?member=alice", air.url))
            .await;
        b.follow(&b.find("tr[data-type=\"earn\"] a.entry-link").await)
            .await;
        shot(b, &dir, 4, "entry").await;
        let e = b.datasets("#entry").await.remove(0);
        let index = num(&e, "index") as u64;
        let receipt: ledger::receipt::Receipt = serde_json::from_value(
            air.get(&format!("/v1/log/entries/{index}/receipt"))
                .await
                .unwrap()
                .ok_json("receipt"),
        )
        .unwrap();
        let verified = receipt.verify(&air.log_verifier()).unwrap();
        assert_eq!(verified.entry.id.as_str(), "e1");
        assert_eq!(txt(&e, "id"), "e1");
        assert_eq!(txt(&e, "type"), "earn");
        assert_eq!(num(&e, "time") as u64, verified.entry.time.get());
        assert_eq!(b.text(&b.find("#entry-bytes").await).await, receipt.entry);
        let inclusion = b.datasets("#inclusion").await.remove(0);
        assert_eq!(
            txt(&inclusion, "leafHash"),
            hex::encode(ledger::merkle::leaf_hash(receipt.entry.as_bytes()))
        );
        assert_eq!(num(&inclusion, "checkpointSize") as u64, size);
        let proof = air
            .get(&format!(
                "/v1/log/proof/inclusion?index={index}&size={size}"
            ))
            .await
            .unwrap()
            .ok_json("inclusion proof");
        let mut shown = Vec::new();
        for li in b.find_all("#proof-hashes li").await {
            shown.push(Value::String(b.text(&li).await));
        }
        assert_eq!(Value::Array(shown), proof["proof"]);
        let badge = b.find("#inclusion .proof").await;
        assert_eq!(b.must_attr(&badge, "data-proof").await, "verified");
        assert_eq!(
            b.text(&badge).await,
            format!("verified in checkpoint size {}", grouped(size))
        );

        // Entry → member.
        b.follow(&b.find("#member-link").await).await;
        shot(b, &dir, 5, "member").await;
        let m = air.member_json("alice").await.unwrap();
        let shown = b.datasets("#member").await.remove(0);
        for (data, field) in [
            ("balance", "balance"),
            ("available", "available"),
            ("pending", "pending"),
        ] {
            assert_eq!(num(&shown, data), m[field].as_i64().unwrap(), "{field}");
        }
        assert_eq!(m["balance"], json!(5000 - 400 + 100 - 300));
        assert_eq!(
            b.text(&b.find("#balance").await).await,
            grouped(m["balance"].as_u64().unwrap())
        );
        let lots: Vec<(i64, i64)> = b
            .datasets("tr[data-lot]")
            .await
            .iter()
            .map(|l| (num(l, "lot"), num(l, "remaining")))
            .collect();
        let want_lots: Vec<(i64, i64)> = m["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["lot"].as_i64().unwrap(), l["remaining"].as_i64().unwrap()))
            .collect();
        assert_eq!(lots, want_lots);
        let got: Vec<i64> = b
            .datasets("#history tr[data-index]")
            .await
            .iter()
            .map(|r| num(r, "index"))
            .collect();
        assert_eq!(got, alice_history, "the member's history");
        all_verified(b, size).await;

        // Member → partners.
        b.follow(&b.find("nav a[href=\"/explorer/partners\"]").await)
            .await;
        shot(b, &dir, 6, "partners").await;
        let p = air.partner("coffee").await.unwrap();
        let row = b.datasets("tr[data-brand=\"coffee\"]").await.remove(0);
        for (data, field) in [
            ("verifiedSize", "verified_size"),
            ("partnerSize", "partner_size"),
            ("lag", "lag"),
            ("evidence", "evidence"),
        ] {
            assert_eq!(num(&row, data), p[field].as_i64().unwrap(), "{field}");
        }
        assert_eq!(txt(&row, "frozen"), "false");
        assert_eq!(
            p["verified_size"].as_u64(),
            Some(coffee.log_size().await.unwrap())
        );
        let evidence = air.evidence().await.unwrap();
        let shown = b.find("#evidence").await;
        assert_eq!(
            b.must_attr(&shown, "data-count").await,
            evidence.len().to_string()
        );

        // Partners → partner.
        b.follow(&b.find("#partner-link-coffee").await).await;
        shot(b, &dir, 7, "partner").await;
        let shown = b.datasets("#partner").await.remove(0);
        assert_eq!(txt(&shown, "brand"), "coffee");
        assert_eq!(txt(&shown, "pinned"), "true");
        let statements = air
            .get("/v1/statements/coffee")
            .await
            .unwrap()
            .ok_json("statements");
        let statements = statements.as_array().unwrap();
        assert_eq!(statements.len(), 1);
        let agreement = b.find("tr[data-agreement=\"agr-1\"]").await;
        assert!(b.text(&agreement).await.contains("air → coffee"));

        // Partner → settlement.
        b.follow(&b.find("#settlement-link").await).await;
        shot(b, &dir, 8, "settlement-partner").await;
        let report = air
            .get(&format!(
                "/v1/reconciliation/coffee?from=0&to={}",
                now_ms() + 86_400_000
            ))
            .await
            .unwrap()
            .ok_json("reconciliation");
        assert_eq!(report["agreed"], json!(true), "{report}");
        let ours = &report["ours"];
        let gross = |payer: &str| -> i64 {
            ours["gross"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["payer"] == payer)
                .map(|g| g["total_minor"].as_i64().unwrap())
                .sum()
        };
        let net = if ours["net"]["payer"] == "air" {
            -ours["net"]["amount_minor"].as_i64().unwrap()
        } else {
            ours["net"]["amount_minor"].as_i64().unwrap()
        };
        let sec = b
            .datasets("section[data-agreement=\"agr-1\"]")
            .await
            .remove(0);
        assert_eq!(num(&sec, "payable"), gross("air"));
        assert_eq!(num(&sec, "receivable"), gross("coffee"));
        assert_eq!(num(&sec, "net"), net);
        assert_eq!((gross("air"), net), (400 - 100 + 300, -600));
        let settled: i64 = statements
            .iter()
            .flat_map(|s| {
                s["statement"]["statement"]["gross"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .filter(|g| g["payer"] == "air")
            .map(|g| g["total_minor"].as_i64().unwrap())
            .sum();
        assert_eq!(num(&sec, "openPayable"), gross("air") - settled);
        assert_eq!(num(&sec, "statements"), 1);
        let rows = b.datasets("table.statements tr[data-period]").await;
        assert_eq!(rows.len(), statements.len());
        for (row, s) in rows.iter().zip(statements) {
            assert_eq!(num(row, "period"), s["period"].as_i64().unwrap());
            let st = &s["statement"]["statement"];
            assert_eq!(txt(row, "netPayer"), st["net"]["payer"].as_str().unwrap());
            assert_eq!(
                num(row, "netAmount"),
                st["net"]["amount_minor"].as_i64().unwrap()
            );
            assert_eq!(num(row, "index"), s["receipt"]["index"].as_i64().unwrap());
        }
        // The chart: the periods' flows add up to the net position, which the line ends at.
        let bars = b.datasets("#chart g.period").await;
        assert!(!bars.is_empty());
        assert_eq!(bars.iter().map(|x| num(x, "flow")).sum::<i64>(), net);
        assert_eq!(num(bars.last().unwrap(), "cumulative"), net);
        let settled_periods: Vec<i64> = bars
            .iter()
            .filter(|x| txt(x, "settled") == "true")
            .map(|x| num(x, "period"))
            .collect();
        assert_eq!(
            settled_periods,
            vec![statements[0]["period"].as_i64().unwrap()]
        );

        // The lines, newest first; a page of one at a time pages through the same lines with
        // the cursor of the "older" link (air's payables red-1 and red-2 and the refund rf-1).
        let full: Vec<i64> = b
            .datasets("section[data-agreement=\"agr-1\"] table.lines tr[data-index]")
            .await
            .iter()
            .map(|r| num(r, "index"))
            .collect();
        assert_eq!(full.len(), 3, "{full:?}");
        assert_eq!(num(&sec, "lines"), 3);
        assert!(b.find_all("a.lines-older").await.is_empty());
        b.goto(&format!("{}/explorer/settlement/coffee?rows=1", air.url))
            .await;
        let mut paged = Vec::new();
        loop {
            let rows = b.datasets("table.lines tr[data-index]").await;
            assert_eq!(
                rows.len(),
                1,
                "at {}: {}",
                b.url().await,
                b.text(&b.find("main#page").await).await
            );
            paged.push(num(&rows[0], "index"));
            let Some(older) = b.find_all("a.lines-older").await.into_iter().next() else {
                break;
            };
            b.follow(&older).await;
            assert!(b.url().await.contains("before="), "{}", b.url().await);
            assert!(paged.len() <= full.len(), "the pages end");
        }
        assert_eq!(paged, full);
        // The last page links back to the newest.
        b.follow(&b.find("a.lines-newest").await).await;
        let rows = b.datasets("table.lines tr[data-index]").await;
        assert_eq!(num(&rows[0], "index"), full[0]);

        // The other side: coffee is owed what air owes.
        b.goto(&format!("{}/explorer/settlement/air", coffee.url))
            .await;
        shot(b, &dir, 9, "settlement-partner").await;
        let theirs = b
            .datasets("section[data-agreement=\"agr-1\"]")
            .await
            .remove(0);
        assert_eq!(num(&theirs, "receivable"), gross("air"));
        assert_eq!(num(&theirs, "net"), -net);
        assert_eq!(num(&theirs, "openReceivable"), num(&sec, "openPayable"));

        // All partners' positions.
        b.goto(&format!("{}/explorer/settlement", air.url)).await;
        shot(b, &dir, 10, "settlement").await;
        assert_eq!(b.find_all("#positions tr[data-agreement]").await.len(), 1);

        // Checkpoints and their cosignatures.
        b.follow(&b.find("nav a[href=\"/explorer/checkpoints\"]").await)
            .await;
        shot(b, &dir, 11, "checkpoints").await;
        let cosigned = air
            .get("/v1/checkpoint/cosigned")
            .await
            .unwrap()
            .ok_json("cosigned");
        let c = b.find("#cosigned-size").await;
        assert_eq!(
            b.must_attr(&c, "data-cosigned-size").await,
            cosigned["size"].to_string()
        );
        let names: Vec<&str> = cosigned["cosigners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(
            b.must_attr(&b.find("#cosigners").await, "data-cosigners")
                .await,
            names.join(",")
        );
        let listed = air
            .get("/v1/log/checkpoints?limit=50")
            .await
            .unwrap()
            .ok_json("checkpoints");
        let want: Vec<i64> = listed["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["size"].as_i64().unwrap())
            .collect();
        let got: Vec<i64> = b
            .datasets("#checkpoints tr[data-size]")
            .await
            .iter()
            .map(|r| num(r, "size"))
            .collect();
        assert_eq!(got, want);

        // Open holds: bob's, and no other (alice's were posted).
        b.follow(&b.find("nav a[href=\"/explorer/holds\"]").await)
            .await;
        shot(b, &dir, 12, "holds").await;
        let holds = b.datasets("tr[data-hold]").await;
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(txt(&holds[0], "hold"), "hold-bob");
        let h = air.get("/v1/holds/hold-bob").await.unwrap().ok_json("hold");
        assert_eq!(h["status"], json!("open"));
        assert_eq!(num(&holds[0], "points"), h["points"].as_i64().unwrap());
        for red in ["red-1", "red-2"] {
            let h = air
                .get(&format!("/v1/holds/{red}"))
                .await
                .unwrap()
                .ok_json("hold");
            assert_eq!(h["status"], json!("posted"));
        }

        // A page that names nothing: a clear 404, as HTML.
        b.goto(&format!("{}/explorer/entries/{}", air.url, size + 100))
            .await;
        shot(b, &dir, 13, "error").await;
        let err = b.find("#error").await;
        assert_eq!(b.must_attr(&err, "data-status").await, "404");
        assert!(b.title().await.starts_with("Not found"));
        let client = http_client();
        for (path, status) in [
            (format!("/explorer/entries/{}", size + 100), 404),
            ("/explorer/members/nobody".to_string(), 404),
            ("/explorer/partners/gym".to_string(), 404),
            ("/explorer/no-such-page".to_string(), 404),
            ("/explorer/log?type=bogus".to_string(), 400),
            ("/explorer/log?before=x".to_string(), 400),
            // Public: no API key needed, unlike the JSON routes it mirrors.
            ("/explorer/partners".to_string(), 200),
        ] {
            let a = send(client.get(format!("{}{path}", air.url)))
                .await
                .unwrap();
            assert_eq!(a.status, status, "{path}: {}", a.text);
            assert!(a.content_type.starts_with("text/html"), "{path}");
        }
        let a = send(client.get(format!("{}/v1/partners", air.url)))
            .await
            .unwrap();
        assert_eq!(a.status, 401);
    })
    .await;
    browser.quit().await;
    for n in 1..=13 {
        let found = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{n:02}-"))
            });
        assert!(found, "screenshot {n} saved in {}", dir.display());
    }
}
