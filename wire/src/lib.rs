//! The wire types of a brand node's HTTP API (spec/api.md): the request bodies, the views
//! (answers) and the error codes ([`ErrorCode`], in [`Problem`] documents), defined once. The
//! node serves them and the SDK reads them, so the two cannot drift apart.
//!
//! Invariant: the JSON of every type here is the API's, byte for byte (field names and order,
//! omitted optional fields, number formats); the node's OpenAPI document (spec/openapi.json)
//! is derived from these types (feature `utoipa`, which only the node turns on).
//!
//! This crate knows no HTTP client or server and does no I/O: it depends on `serde` and on
//! the ledger's domain types (built without RocksDB).

pub mod federation;
pub mod keys;
pub mod log;
pub mod problem;
pub mod reads;
pub mod redemption;
pub mod writes;

pub use federation::*;
pub use keys::*;
pub use log::*;
pub use problem::{ErrorCode, Problem};
pub use reads::*;
pub use writes::*;

#[cfg(test)]
mod tests {
    use crate::*;
    use ledger::entry::{Direction, HexBytes, HexHash};
    use ledger::types::{EntryId, LogIndex, LogTime, MemberId, Points};
    use serde_json::json;

    fn id(s: &str) -> EntryId {
        s.parse().unwrap()
    }

    #[test]
    fn earn_request_omits_the_default_qualifying_flag() {
        let r = EarnRequest::new(id("e-1"), Points::new(100).unwrap());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"e-1","points":100})
        );
        let r = r.non_qualifying();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"e-1","points":100,"qualifying":false})
        );
    }

    #[test]
    fn write_requests_serialize_exactly_as_the_api_says() {
        let h = HoldRequest {
            condition: Some(HexHash([0xab; 32])),
            payee: Some("brand-b".parse().unwrap()),
            ..HoldRequest::new(
                id("h-1"),
                Points::new(5).unwrap(),
                LogTime::new(99).unwrap(),
            )
        };
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            json!({"id":"h-1","points":5,"expires_at":99,"payee":"brand-b","condition":"ab".repeat(32)})
        );
        let p = PostRequest {
            id: id("p-1"),
            preimage: Some(HexBytes(vec![1, 2])),
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"id":"p-1","preimage":"0102"})
        );
        let a = AdjustRequest {
            id: id("a-1"),
            points: Points::new(7).unwrap(),
            direction: Direction::Debit,
            reason: "goodwill".into(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"id":"a-1","points":7,"direction":"debit","reason":"goodwill"})
        );
        let r = SetRateCardRequest {
            id: id("r-1"),
            currency: "EUR".parse().unwrap(),
            point_value: "0.0125".parse().unwrap(),
            valid_from: LogTime::new(1000).unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"r-1","currency":"EUR","point_value":"0.0125","valid_from":1000})
        );
        let e = SetExpiryRequest {
            id: id("x-1"),
            lot_lifetime_ms: None,
        };
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"id":"x-1"}));
        let k = CreateKeyRequest {
            name: "pos".into(),
            scopes: vec![Scope::Earn, Scope::Read],
        };
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            json!({"name":"pos","scopes":["earn","read"]})
        );
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_sent() {
        assert!(serde_json::from_value::<EarnRequest>(json!({"id":"e","points":0})).is_err());
        assert!(serde_json::from_value::<EarnRequest>(json!({"id":"a b","points":1})).is_err());
        assert!("alice@example.com".parse::<MemberId>().is_err());
        assert!(Points::new(1 << 53).is_err());
    }

    #[test]
    fn responses_decode_from_the_api_shapes() {
        let m: MemberInfo = serde_json::from_value(json!({
            "member":"m1","balance":10,"available":8,"pending":2,"tier":null,
            "tier_valid_until":null,"lots":[{"lot":3,"remaining":10,"expires_at":null}]
        }))
        .unwrap();
        assert_eq!(m.lots[0].lot, LogIndex::new(3).unwrap());
        let h: HistoryPage = serde_json::from_value(json!({
            "entries":[{"index":0,"entry":{"body":{"member":"m1","points":10},"id":"e-1","time":5,"type":"earn","v":1}}],
            "next_cursor":null
        }))
        .unwrap();
        assert_eq!(h.entries[0].entry.id, id("e-1"));
        let hold: HoldInfo = serde_json::from_value(json!({
            "id":"h-1","index":4,"member":"m1","points":3,"expires_at":100,"payee":null,
            "status":"posted","resolved_index":6
        }))
        .unwrap();
        assert_eq!(hold.status, HoldStatusKind::Posted);
        let p: PolicyInfo = serde_json::from_value(json!({
            "tier":{"tiers":[{"name":"blue","threshold":0}],"window_ms":10,"grace_ms":0},
            "expiry":{"lot_lifetime_ms":5},
            "rate_cards":[{"index":1,"currency":"EUR","point_value":"0.01","valid_from":7}]
        }))
        .unwrap();
        assert_eq!(p.rate_cards[0].point_value.to_string(), "0.01");
    }
}
