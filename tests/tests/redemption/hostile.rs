//! A dishonest payee (issue 13, items 1 and 12): it signs peer requests with its own, pinned
//! key, so everything in them is its choice. The payer bounds the quote's times and the hold's
//! expiry by its own clock, and commits only the quote it prepared (spec/redemption.md §3.1);
//! ids that cannot name a redemption are refused, never a 500.

use sha2::{Digest, Sha256};

use super::edge::{authorise, entries_of, peer_post, points, quote};
#[allow(unused_imports)]
use super::*;

const PREPARE: &str = "/v1/peer/redemptions/prepare";
const TEN_YEARS_MS: u64 = 10 * 365 * 86_400_000;

/// A refusal by the payer itself (the request came straight from the "payee").
fn assert_code(a: &federation_tests::harness::Answer, status: u16, code: &str, what: &str) {
    a.assert_problem(status, code, what);
}

/// Reproduces the attack of issue 13 item 1: air's rate card went from EUR 0.05 to 0.01 a
/// point; coffee, the payee, signs a prepare whose quote is dated in the old card's window,
/// lives ten years, with a hold expiring in ten years, and later a commit carrying another
/// quote than the one prepared. Air refuses each, logs nothing for them, and then holds and
/// commits the honest quote at the honest price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_bounds_quote_times_and_commits_only_the_prepared_quote() {
    bounded(LIMIT, "payer rules", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        agree(air, coffee, &terms("agr-1", 0)).await;
        air.client()
            .earn(
                &"alice".parse().unwrap(),
                &sdk::EarnRequest::new("e1".parse().unwrap(), sdk::Points::new(5000).unwrap()),
            )
            .await
            .unwrap();
        let far = now_ms() + 600_000;
        for i in 1..=6 {
            authorise(air, "alice", &format!("auth-{i}"), "coffee", 2000, far).await;
        }
        let (old_card, t_old) = rate_card(air, "rc-old", "0.05").await;
        mirrored_and_after(coffee, air, t_old).await;
        let (new_card, t_new) = rate_card(air, "rc-new", "0.01").await;
        mirrored_and_after(coffee, air, t_new).await;

        // The honest quote: 1,000 points at EUR 0.01 are 1,000 cents.
        let honest = quote(coffee, "red-1", "air", "alice", 1000).await;
        assert_eq!(honest["amount_minor"], json!(1000), "{honest}");
        assert_eq!(honest["rate_card_index"], json!(new_card), "{honest}");
        let preimage = [7u8; 32];
        let condition = hex::encode(Sha256::digest(preimage));
        let prepare_body = |q: &Value, auth: &str, expires_at: u64| {
            json!({"quote": q, "authorisation": auth, "condition": condition, "expires_at": expires_at})
        };
        let log_before = air.log_size().await.unwrap();

        // 1. Back-dated into the old card's window, a ten-year quote, a ten-year hold.
        let mut back_dated = honest.clone();
        let quoted_at = t_old + 10;
        back_dated["quoted_at"] = json!(quoted_at);
        back_dated["expires_at"] = json!(quoted_at + TEN_YEARS_MS);
        back_dated["rate_card_index"] = json!(old_card);
        back_dated["amount_minor"] = json!(5000);
        let a = peer_post(
            coffee,
            air,
            PREPARE,
            &prepare_body(&back_dated, "auth-1", now_ms() + TEN_YEARS_MS),
        )
        .await;
        assert_code(&a, 422, "quote_out_of_bounds", "a ten-year back-dated quote");

        // 2. Dated ten minutes ahead of the payer's clock (beyond the skew allowance).
        let mut ahead = honest.clone();
        let quoted_at = now_ms() + 600_000;
        ahead["quoted_at"] = json!(quoted_at);
        ahead["expires_at"] = json!(quoted_at + 300_000);
        let a = peer_post(coffee, air, PREPARE, &prepare_body(&ahead, "auth-1", now_ms() + 60_000)).await;
        assert_code(&a, 422, "quote_out_of_bounds", "a quote from the future");

        // 3. An honest quote, but a hold that outlives it.
        let expires = honest["expires_at"].as_u64().unwrap();
        let a = peer_post(coffee, air, PREPARE, &prepare_body(&honest, "auth-1", expires + 1)).await;
        assert_code(&a, 422, "hold_out_of_bounds", "a hold past the quote");

        // 4. A day-long quote (allowed) with a hold of three hours (beyond the hold limit).
        let long = coffee
            .post_json(
                "/v1/redemptions/quote",
                &json!({"redemption": "red-2", "agreement": "agr-1", "payer": "air",
                        "member": "alice", "points": 1000, "ttl_ms": 86_400_000}),
            )
            .await
            .unwrap()
            .ok_json("a day-long quote")["quote"]
            .clone();
        let a = peer_post(
            coffee,
            air,
            PREPARE,
            &prepare_body(&long, "auth-2", now_ms() + 3 * 3_600_000),
        )
        .await;
        assert_code(&a, 422, "hold_out_of_bounds", "a three-hour hold");

        // Nothing was held or logged for any of them.
        assert_eq!(air.log_size().await.unwrap(), log_before);
        assert_eq!(points(air, "alice").await, (5000, 0));
        air.get("/v1/holds/red-1")
            .await
            .unwrap()
            .assert_problem(404, "unknown_hold", "no hold for a refused prepare");

        // The honest prepare holds.
        let a = peer_post(coffee, air, PREPARE, &prepare_body(&honest, "auth-1", now_ms() + 60_000)).await;
        assert_eq!(a.status, 200, "the honest prepare: {}", a.text);
        assert_eq!(points(air, "alice").await, (4000, 1000));

        // 5. The commit carries another quote (the old card's price, a short, plausible
        // lifetime, so re-pricing alone would accept it): refused, nothing posted.
        let mut swapped = back_dated.clone();
        let q_at = back_dated["quoted_at"].as_u64().unwrap();
        swapped["expires_at"] = json!(q_at + 300_000);
        let commit_path = "/v1/peer/redemptions/red-1/commit";
        let a = peer_post(
            coffee,
            air,
            commit_path,
            &json!({"preimage": hex::encode(preimage), "quote": swapped}),
        )
        .await;
        assert_code(&a, 422, "quote_mismatch", "a commit with another quote");
        assert!(entries_of(air, "obligation").await.is_empty());
        assert_eq!(points(air, "alice").await, (4000, 1000));

        // A prepare of the same redemption with another quote is refused too.
        let a = peer_post(coffee, air, PREPARE, &prepare_body(&swapped, "auth-1", now_ms() + 60_000)).await;
        assert!(a.status >= 400 && a.status < 500, "{} {}", a.status, a.text);

        // The prepared quote commits, at the honest price.
        let a = peer_post(
            coffee,
            air,
            commit_path,
            &json!({"preimage": hex::encode(preimage), "quote": honest}),
        )
        .await;
        assert_eq!(a.status, 200, "the honest commit: {}", a.text);
        let obligations = entries_of(air, "obligation").await;
        assert_eq!(obligations.len(), 1);
        assert_eq!(obligations[0]["body"]["quote"]["amount_minor"], json!(1000));
        assert_eq!(points(air, "alice").await, (4000, 0));
    })
    .await;
}

/// Issue 13 item 12: a local hold for a partner with an id of 120-128 characters used to make
/// the partner's void and commit answer 500 (the ids derived from it are too long). Such an id
/// is now checked as a redemption id, at the hold and at the peer routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_on_partner_holds_are_refused_not_500() {
    bounded(LIMIT, "long ids", async {
        let nodes = start_nodes(&["air", "coffee"], FAST_FEDERATION).await;
        pin_all(&nodes).await;
        let (air, coffee) = (&nodes[0], &nodes[1]);
        air.client()
            .earn(
                &"alice".parse().unwrap(),
                &sdk::EarnRequest::new("e1".parse().unwrap(), sdk::Points::new(500).unwrap()),
            )
            .await
            .unwrap();
        authorise(air, "alice", "auth-long", "coffee", 100, now_ms() + 600_000).await;
        let long = "h".repeat(125);
        let a = air
            .post_json(
                "/v1/members/alice/holds",
                &json!({"id": long, "points": 100, "expires_at": now_ms() + 600_000,
                        "payee": "coffee", "authorisation": "auth-long",
                        "condition": hex::encode([1u8; 32])}),
            )
            .await
            .unwrap();
        a.assert_problem(
            422,
            "redemption_id_too_long",
            "a partner hold with a long id",
        );
        for path in [
            format!("/v1/peer/redemptions/{long}/void"),
            format!("/v1/peer/redemptions/{long}/commit"),
        ] {
            let body = if path.ends_with("void") {
                json!({})
            } else {
                json!({"preimage": hex::encode([1u8; 32]), "quote": {}})
            };
            let a = peer_post(coffee, air, &path, &body).await;
            assert!(a.status != 500, "{path}: {} {}", a.status, a.text);
            assert!(
                a.status >= 400 && a.status < 500,
                "{path}: {} {}",
                a.status,
                a.text
            );
        }
    })
    .await;
}
