//! Multi-node tests of cross-brand redemption (spec/redemption.md), with real `loyalty-node`
//! processes on loopback. So far: agreements approved on both sides and co-signed.

use std::time::Duration;

use federation_tests::harness::{bounded, pin_all, start_nodes, Node, FAST_FEDERATION};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);

fn terms(id: &str, fee_bps: u64) -> Value {
    json!({
        "agreement": id,
        "brands": ["air", "coffee"],
        "directions": [{"payer": "air", "payee": "coffee"}],
        "settlement_currency": "EUR",
        "fx_source": "air",
        "fee_bps": fee_bps,
        "credit_limit_minor": 1_000_000,
        "period_ms": 86_400_000,
        "period_origin": 0,
        "rounding": "half_even",
        "valid_from": 0
    })
}

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
