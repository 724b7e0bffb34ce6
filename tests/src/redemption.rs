//! Steps of the cross-brand redemption set-up shared by the multi-node tests
//! (`tests/tests/redemption.rs`) and the redemption benchmark (`tests/benches/redemptions.rs`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{now_ms, send, u64_field, wait_until, Node};

/// Terms of agreement `id` between `air` (payer) and `coffee` (payee), in EUR, with a fee of
/// `fee_bps`; callers change what their case needs.
pub fn terms(id: &str, fee_bps: u64) -> Value {
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

/// Approves `terms` on both nodes (the second approval logs it on both).
pub async fn agree(a: &Node, b: &Node, terms: &Value) {
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

/// Logs a rate card at `node` valid from shortly after now; returns its entry index and time.
pub async fn rate_card(node: &Node, id: &str, point_value: &str) -> (u64, u64) {
    let valid_from = now_ms() + 300;
    let a = send(
        crate::harness::http_client()
            .put(format!("{}/v1/policy/rate-card", node.url))
            .bearer_auth(&node.admin_key)
            .json(&json!({"id": id, "currency": "EUR", "point_value": point_value, "valid_from": valid_from})),
    )
    .await
    .unwrap();
    let v = a.ok_json("rate card");
    (v["receipt"]["index"].as_u64().unwrap(), valid_from)
}

/// Waits until `node` mirrors all of `origin`'s log and the clock passed `t`.
pub async fn mirrored_and_after(node: &Node, origin: &Node, t: u64) {
    let size = origin.log_size().await.unwrap();
    wait_until(
        "mirror caught up and rate in force",
        Duration::from_secs(30),
        || async {
            let p = node.partner(&origin.brand).await?;
            let v = u64_field(&p, "verified_size")?;
            if v >= size && now_ms() > t + 20 {
                Ok(())
            } else {
                Err(format!("verified {v} of {size}"))
            }
        },
    )
    .await;
}
