//! Refunds across nodes and co-signed settlement statements between real nodes.

use super::*;

fn id(s: &str) -> sdk::EntryId {
    s.parse().unwrap()
}

fn brand(s: &str) -> sdk::BrandId {
    s.parse().unwrap()
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

fn refund_req(refund: &str, points: u64) -> sdk::federation::RefundRequest {
    sdk::federation::RefundRequest {
        refund: id(refund),
        points: sdk::Points::new(points).unwrap(),
    }
}

/// Alice's (balance, pending) at air.
async fn alice(air: &Node) -> (u64, u64) {
    let m = air.member_json("alice").await.unwrap();
    (
        m["balance"].as_u64().unwrap(),
        m["pending"].as_u64().unwrap(),
    )
}

/// The problem code of an SDK error, and its detail.
fn problem(e: &sdk::Error) -> (String, String) {
    match e {
        sdk::Error::Api { code, detail, .. } => (code.to_string(), detail.clone()),
        other => (format!("{other:?}"), String::new()),
    }
}

/// Both logs replay (`verify_log`) and both reconciliations agree on `lines` lines with air
/// owing coffee `net` minor units.
async fn both_agree(air: &Node, coffee: &Node, lines: usize, net: u64) {
    mirrored_and_after(air, coffee, 0).await;
    mirrored_and_after(coffee, air, 0).await;
    for (n, partner) in [(air, "coffee"), (coffee, "air")] {
        let r = n
            .client()
            .reconciliation(&brand(partner), None, 0, now_ms() + 86_400_000)
            .await
            .unwrap();
        assert!(r.agreed, "{}: {r:?}", n.brand);
        assert_eq!(r.lines.len(), lines, "{}", n.brand);
        assert_eq!(
            (r.ours.net.payer.as_str(), r.ours.net.amount_minor),
            ("air", net),
            "{}",
            n.brand
        );
        let summary = sdk::verify_log(
            &n.client(),
            &n.log_verifier(),
            sdk::VerifyOptions::default(),
        )
        .await;
        assert!(summary.is_ok(), "{} does not verify: {summary:?}", n.brand);
    }
}

/// A refund at coffee (the redeeming brand) reverses both sides: air returns the points to
/// alice and takes the refund's share off what it owes (cumulative, half-even), coffee logs its
/// side with air's receipt. Partial, then full; never more than was committed; idempotent by
/// refund id; a plain refund of the partner redemption at air is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_reverse_both_sides_partially_fully_and_never_beyond() {
    bounded(LIMIT, "refunds", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        // A 1.5 % fee: 333 points are worth 333 cents, 328.005 after the fee, 328 committed.
        agree(air, coffee, &terms("agr-1", 150)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 1000)]).await;
        let app = coffee.client();
        let done = app
            .redeem_at_partner(&redeem_req("red-1", "auth-1", 333))
            .await
            .unwrap();
        assert_eq!(done.amount_minor, 328);
        assert_eq!(alice(air).await, (4667, 0));

        // 100 of 333 points: 98.498.. → 98.
        let r1 = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-1", 100))
            .await
            .unwrap();
        assert_eq!(
            (
                r1.amount_minor,
                r1.points,
                r1.refunded_points,
                r1.currency.as_str()
            ),
            (98, 100, 100, "EUR")
        );
        assert_eq!(alice(air).await, (4767, 0));
        // The payer's receipt verifies against air's key, and names the refund.
        let payer_side = r1.payer.verify(&air.log_verifier()).unwrap();
        let ledger::entry::EntryKind::ObligationRefund(body) = &payer_side.entry.kind else {
            panic!("air's receipt is for {:?}", payer_side.entry.kind);
        };
        assert_eq!(
            (body.refund.as_str(), body.points.get(), body.amount_minor),
            ("rf-1", 100, 98)
        );
        r1.receivable.verify(&coffee.log_verifier()).unwrap();
        // Retried: the same answer, nothing logged twice.
        let (sa, sc) = (
            air.log_size().await.unwrap(),
            coffee.log_size().await.unwrap(),
        );
        let again = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-1", 100))
            .await
            .unwrap();
        assert_eq!(
            (
                again.amount_minor,
                again.payer.index,
                again.receivable.index
            ),
            (98, r1.payer.index, r1.receivable.index)
        );
        assert_eq!(
            (
                air.log_size().await.unwrap(),
                coffee.log_size().await.unwrap()
            ),
            (sa, sc)
        );
        // The same refund id with other points is a conflict.
        let e = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-1", 101))
            .await
            .unwrap_err();
        assert_eq!(problem(&e).0, "id_conflict", "{e:?}");
        // Over what is left (233): refused, nothing changes.
        let e = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-2", 234))
            .await
            .unwrap_err();
        assert_eq!(problem(&e).0, "refund_exceeds_obligation", "{e:?}");
        assert_eq!(alice(air).await, (4767, 0));
        // A plain refund at air of the partner redemption would leave coffee owed: refused.
        let a = air
            .post_json(
                "/v1/redemptions/red-1/refund",
                &json!({"id": "plain-1", "points": 10}),
            )
            .await
            .unwrap();
        assert_eq!(
            a.code().as_deref(),
            Some("refund_needs_partner"),
            "{}",
            a.text
        );
        // Unknown redemptions and uncommitted ones.
        let e = app
            .refund_at_partner(&id("red-none"), &refund_req("rf-9", 1))
            .await
            .unwrap_err();
        assert_eq!(problem(&e).0, "unknown_quote", "{e:?}");

        // The rest: 328 − 98 = 230 in all, exactly.
        let r2 = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-2", 233))
            .await
            .unwrap();
        assert_eq!((r2.amount_minor, r2.refunded_points), (230, 333));
        assert_eq!(alice(air).await, (5000, 0));
        let e = app
            .refund_at_partner(&id("red-1"), &refund_req("rf-3", 1))
            .await
            .unwrap_err();
        assert_eq!(problem(&e).0, "refund_exceeds_obligation", "{e:?}");
        // Air's clearing account for coffee is back to zero; the obligation nets to zero on
        // both sides, line by line (the commit and two refunds).
        both_agree(air, coffee, 3, 0).await;
    })
    .await;
}

/// A kill -9 of either node at each refund step (air right after logging its side, coffee right
/// after verifying air's answer), then a restart: the refund completes exactly once, and a
/// refund started but not finished at coffee is finished before the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_refund_step_is_recovered_exactly_once() {
    bounded(LIMIT, "refund crashes", async {
        let mut nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        agree(&nodes[0], &nodes[1], &terms("agr-1", 0)).await;
        ready_to_redeem(&nodes[0], &nodes[1], 5000, &[("auth-1", 1000)]).await;
        let done = nodes[1]
            .client()
            .redeem_at_partner(&redeem_req("red-1", "auth-1", 1000))
            .await
            .unwrap();
        assert_eq!(done.amount_minor, 1000);

        // Air dies right after its side is durable, before it answers.
        nodes[0].set_env("LOYALTY_FAULT", Some("payer_refund_logged"));
        nodes[0].stop().await;
        nodes[0].start().await;
        let e = nodes[1]
            .client()
            .refund_at_partner(&id("red-1"), &refund_req("rf-1", 300))
            .await
            .unwrap_err();
        assert_eq!(problem(&e).0, "partner_unavailable", "{e:?}");
        nodes[0].set_env("LOYALTY_FAULT", None);
        nodes[0].kill9();
        nodes[0].start().await;
        assert_eq!(alice(&nodes[0]).await, (4300, 0), "air's side was logged");
        let r1 = nodes[1]
            .client()
            .refund_at_partner(&id("red-1"), &refund_req("rf-1", 300))
            .await
            .unwrap();
        assert_eq!((r1.amount_minor, r1.refunded_points), (300, 300));
        assert_eq!(alice(&nodes[0]).await, (4300, 0), "returned once");

        // Coffee dies after air answered, before logging its side.
        nodes[1].set_env("LOYALTY_FAULT", Some("payee_refund_answered"));
        nodes[1].stop().await;
        nodes[1].start().await;
        let e = nodes[1]
            .client()
            .refund_at_partner(&id("red-1"), &refund_req("rf-2", 200))
            .await
            .unwrap_err();
        assert!(
            matches!(e, sdk::Error::Transport(_) | sdk::Error::Api { .. }),
            "{e:?}"
        );
        nodes[1].set_env("LOYALTY_FAULT", None);
        nodes[1].kill9();
        nodes[1].start().await;
        assert_eq!(alice(&nodes[0]).await, (4500, 0), "air's side was logged");
        // The app moves on to another refund; the unfinished one is finished first, so both
        // logs hold rf-2 before rf-3.
        let r3 = nodes[1]
            .client()
            .refund_at_partner(&id("red-1"), &refund_req("rf-3", 500))
            .await
            .unwrap();
        assert_eq!((r3.amount_minor, r3.refunded_points), (500, 1000));
        assert_eq!(alice(&nodes[0]).await, (5000, 0));
        let r2 = nodes[1]
            .client()
            .refund_at_partner(&id("red-1"), &refund_req("rf-2", 200))
            .await
            .unwrap();
        assert!(r2.receivable.index < r3.receivable.index);
        assert!(r2.payer.index < r3.payer.index);
        // Nothing lost or created: the commit and three refunds net to zero on both sides.
        both_agree(&nodes[0], &nodes[1], 4, 0).await;
    })
    .await;
}

/// Terms whose settlement periods are `period_ms` long from `origin`, with a credit limit.
fn short_terms(origin: u64, period_ms: u64, credit_limit_minor: u64) -> Value {
    let mut t = terms("agr-1", 0);
    t["period_origin"] = json!(origin);
    t["period_ms"] = json!(period_ms);
    t["credit_limit_minor"] = json!(credit_limit_minor);
    t
}

/// Once a settlement period has ended and both brands' lines match, one node co-signs the
/// statement with the other and both log the identical co-signed entry; the period's payables
/// are then settled and no longer count against the credit limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_cosigned_once_both_sides_agree_and_settle_the_period() {
    bounded(LIMIT, "statements", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        let period_ms = 6_000;
        let origin = now_ms() / period_ms * period_ms;
        agree(air, coffee, &short_terms(origin, period_ms, 1_500)).await;
        ready_to_redeem(air, coffee, 5000, &[("auth-1", 1000), ("auth-2", 1000)]).await;
        let app = coffee.client();
        let first = app
            .redeem_at_partner(&redeem_req("red-1", "auth-1", 1000))
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
        let k = (t1 - origin) / period_ms;
        // A second 1000 would put 2000 open above the limit of 1500.
        let e = app
            .redeem_at_partner(&redeem_req("red-2", "auth-2", 1000))
            .await
            .unwrap_err();
        assert!(problem(&e).1.contains("credit_limit_exceeded"), "{e:?}");

        // Not before the period has ended.
        let end = origin + (k + 1) * period_ms;
        if now_ms() + 500 < end {
            let e = app.statement(&brand("air"), None, k).await.unwrap_err();
            assert_eq!(problem(&e).0, "period_open", "{e:?}");
        }
        wait_until("the period ends", Duration::from_secs(20), || async {
            (now_ms() > end + 50)
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        })
        .await;
        mirrored_and_after(air, coffee, 0).await;
        mirrored_and_after(coffee, air, 0).await;
        let logged = app.statement(&brand("air"), None, k).await.unwrap();
        let st = &logged.statement.statement;
        assert_eq!(logged.period, k);
        assert_eq!(st.period.from().get(), origin + k * period_ms);
        assert_eq!(
            (
                st.net.payer.as_str(),
                st.net.payee.as_str(),
                st.net.amount_minor,
                st.lines
            ),
            ("air", "coffee", 1000, 1)
        );
        assert_eq!(logged.statement.signatures.len(), 2);
        logged.receipt.verify(&coffee.log_verifier()).unwrap();
        // Logged on both sides, identically; asking again (at either node) gives it back.
        let at_air = air
            .client()
            .statements(&brand("coffee"), None)
            .await
            .unwrap();
        assert_eq!(at_air.len(), 1);
        assert_eq!(at_air[0].statement, logged.statement);
        at_air[0].receipt.verify(&air.log_verifier()).unwrap();
        let again = air
            .client()
            .statement(&brand("coffee"), None, k)
            .await
            .unwrap();
        assert_eq!(again.statement, logged.statement);
        assert_eq!(again.receipt.index, at_air[0].receipt.index);
        let size = coffee.log_size().await.unwrap();
        assert_eq!(
            app.statement(&brand("air"), None, k)
                .await
                .unwrap()
                .receipt
                .index,
            logged.receipt.index
        );
        assert_eq!(coffee.log_size().await.unwrap(), size);

        // The settled period's payable no longer counts: the second redemption commits now.
        let second = app
            .redeem_at_partner(&redeem_req("red-2", "auth-2", 1000))
            .await
            .unwrap();
        assert_eq!(second.amount_minor, 1000);
        for n in [air, coffee] {
            let summary = sdk::verify_log(
                &n.client(),
                &n.log_verifier(),
                sdk::VerifyOptions::default(),
            )
            .await;
            assert!(summary.is_ok(), "{} does not verify: {summary:?}", n.brand);
        }
    })
    .await;
}
