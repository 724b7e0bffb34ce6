//! The bodies the HTTP API decodes (node/src/api.rs, node/src/admin.rs, node/src/federation/)
//! and the checks the handlers run on them before any state is read: the id validators
//! (`api::check_id`, `redeem::check_redemption_id`, `settle::check_refund_id`), the witness's
//! `add-checkpoint` body (`witness::parse_request`), a new API key (`keys::check_new_key`) and a
//! partner's settings (`federation::check_partner`).
//!
//! Input: one byte choosing the body type, then the body.
//!
//! Invariants checked: nothing panics; every body a write handler accepts makes an entry that
//! either exceeds `ENTRY_BYTES_MAX` (which the log refuses, `entry_too_large`) or encodes to
//! canonical bytes that decode to the same entry; the ids derived from an accepted redemption
//! id are valid entry ids.
#![no_main]

use std::sync::OnceLock;

use ledger::agreement::{AgreementTerms, SignedAgreement};
use ledger::checkpoint::{vectors::seed, NoteSigner, WitnessPolicy};
use ledger::entry::{
    Adjust, Earn, Entry, EntryKind, ExpiryPolicy, FxRate, Hold, Post, RateCard, Redeem, Refund,
    SpendAuthorisation, TierPolicy, Void, ENTRY_BYTES_MAX,
};
use ledger::statement::SignedStatement;
use ledger::types::{BrandId, EntryId, LogTime, MemberId};
use libfuzzer_sys::fuzz_target;
use node::api::{self, check_id};
use node::config::PartnerConfig;
use node::federation::redeem::{self, check_redemption_id, derived_id};
use node::federation::settle::{check_refund_id, RefundRequest};
use node::federation::{check_partner, witness, witness_verifier};
use node::keys::check_new_key;
use serde::de::DeserializeOwned;

/// brand-a's log key of spec/vectors/ (its receipts verify), no witnesses needed.
fn policy() -> &'static WitnessPolicy {
    static POLICY: OnceLock<WitnessPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let name = "loyalty.example/brand-a";
        WitnessPolicy {
            log: NoteSigner::from_seed(name, &seed(name)).unwrap().verifier(),
            witnesses: Vec::new(),
            quorum: 0,
        }
    })
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// What `api::submit` and the log do with a write the handler built: refuse a reserved id,
/// refuse an entry above the limit, else log bytes that every reader decodes back to it.
fn check_entry(id: EntryId, kind: EntryKind) {
    if check_id(&id).is_err() {
        return;
    }
    let entry = Entry {
        time: LogTime::new(1_700_000_000_000).unwrap(),
        id,
        kind,
    };
    let bytes = entry.to_bytes();
    if bytes.len() > ENTRY_BYTES_MAX {
        return;
    }
    match Entry::from_bytes(&bytes) {
        Ok(decoded) => assert_eq!(decoded, entry),
        Err(e) => panic!(
            "a handler would log an entry no reader decodes: {e}: {}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// As `check_entry`, for the handlers that validate the body first.
fn check_validated_entry(id: EntryId, kind: EntryKind) {
    if kind.validate().is_ok() {
        check_entry(id, kind);
    }
}

fn member() -> MemberId {
    "m-8f3a9c".parse().unwrap()
}

fn hold_id() -> EntryId {
    "hold-1".parse().unwrap()
}

fn check_redemption(id: &EntryId) {
    if check_redemption_id(id).is_ok() {
        for what in ["obl", "post", "void"] {
            derived_id(what, id).expect("a derived id of an accepted redemption id is valid");
        }
    }
}

fn body(kind: u8, b: &[u8]) {
    match kind % 24 {
        0 => {
            if let Some(b) = decode::<api::EarnBody>(b) {
                let kind = EntryKind::Earn(Earn {
                    member: member(),
                    points: b.points,
                    qualifying: b.qualifying.unwrap_or(true),
                });
                check_entry(b.id, kind);
            }
        }
        1 => {
            if let Some(b) = decode::<api::RedeemBody>(b) {
                let kind = EntryKind::Redeem(Redeem {
                    member: member(),
                    points: b.points,
                });
                check_entry(b.id, kind);
            }
        }
        2 => {
            if let Some(b) = decode::<api::AdjustBody>(b) {
                let kind = EntryKind::Adjust(Adjust {
                    member: member(),
                    points: b.points,
                    direction: b.direction,
                    reason: b.reason,
                });
                check_validated_entry(b.id, kind);
            }
        }
        3 => {
            if let Some(b) = decode::<api::HoldBody>(b) {
                if b.payee.is_some() && b.authorisation.is_none() {
                    return;
                }
                let kind = EntryKind::Hold(Hold {
                    member: member(),
                    points: b.points,
                    expires_at: b.expires_at,
                    payee: b.payee,
                    condition: b.condition,
                    authorisation: b.authorisation,
                });
                check_entry(b.id, kind);
            }
        }
        4 => {
            if let Some(b) = decode::<api::AuthorisationBody>(b) {
                let kind = EntryKind::SpendAuthorisation(SpendAuthorisation {
                    member: member(),
                    payee: b.payee,
                    max_points: b.max_points,
                    expires_at: b.expires_at,
                });
                check_entry(b.id, kind);
            }
        }
        5 => {
            if let Some(b) = decode::<api::PostBody>(b) {
                let kind = EntryKind::Post(Post {
                    hold: hold_id(),
                    preimage: b.preimage,
                });
                check_entry(b.id, kind);
            }
        }
        6 => {
            if let Some(b) = decode::<api::VoidBody>(b) {
                check_entry(b.id, EntryKind::Void(Void { hold: hold_id() }));
            }
        }
        7 => {
            if let Some(b) = decode::<api::RefundBody>(b) {
                let kind = EntryKind::Refund(Refund {
                    redemption: hold_id(),
                    points: b.points,
                });
                check_entry(b.id, kind);
            }
        }
        8 => {
            if let Some(b) = decode::<api::TiersBody>(b) {
                let kind = EntryKind::TierPolicy(TierPolicy {
                    tiers: b.tiers,
                    window_ms: b.window_ms,
                    grace_ms: b.grace_ms,
                });
                check_validated_entry(b.id, kind);
            }
        }
        9 => {
            if let Some(b) = decode::<api::ExpiryBody>(b) {
                let kind = EntryKind::ExpiryPolicy(ExpiryPolicy {
                    lot_lifetime_ms: b.lot_lifetime_ms,
                });
                check_validated_entry(b.id, kind);
            }
        }
        10 => {
            if let Some(b) = decode::<api::RateCardBody>(b) {
                let kind = EntryKind::RateCard(RateCard {
                    currency: b.currency,
                    point_value: b.point_value,
                    valid_from: b.valid_from,
                });
                check_entry(b.id, kind);
            }
        }
        11 => {
            if let Some(b) = decode::<api::FxRateBody>(b) {
                let kind = EntryKind::FxRate(FxRate {
                    from: b.from,
                    to: b.to,
                    rate: b.rate,
                    valid_from: b.valid_from,
                });
                check_entry(b.id, kind);
            }
        }
        12 => {
            if let Some(b) = decode::<node::federation::quotes::QuoteBody>(b) {
                check_redemption(&b.redemption);
            }
        }
        13 => {
            if let Some(b) = decode::<redeem::PrepareBody>(b) {
                let _ = check_id(&b.authorisation);
            }
        }
        14 => {
            if let Some(r) = decode::<redeem::PrepareRequest>(b) {
                check_redemption(&r.quote.redemption);
                let _ = EntryKind::Quote(r.quote).validate();
            }
        }
        15 => {
            if let Some(r) = decode::<redeem::CommitRequest>(b) {
                check_redemption(&r.quote.redemption);
                let _ = EntryKind::Quote(r.quote).validate();
            }
        }
        16 => {
            if let Some(r) = decode::<RefundRequest>(b) {
                let _ = check_refund_id(&r.refund);
            }
        }
        17 => {
            if let Some(t) = decode::<AgreementTerms>(b) {
                let _ = t.validate();
            }
        }
        18 => {
            if let Some(a) = decode::<SignedAgreement>(b) {
                if a.terms.validate().is_ok() && a.verify_self_consistent().is_ok() {
                    check_entry(a.terms.agreement.clone(), EntryKind::Agreement(a));
                }
            }
        }
        19 => {
            if let Some(p) = decode::<node::federation::routes::AddPartner>(b) {
                let Ok(brand) = p.brand.parse::<BrandId>() else {
                    return;
                };
                let own: BrandId = "brand-b".parse().unwrap();
                let cfg = PartnerConfig {
                    brand,
                    url: p.url,
                    verifier_key: p.verifier_key,
                };
                if let Ok(Some(v)) = check_partner(&own, &cfg, false) {
                    let _ = witness_verifier(&v);
                }
            }
        }
        20 => {
            if let Some(a) = decode::<ledger::attestation::Attestation>(b) {
                let brand: BrandId = "brand-a".parse().unwrap();
                let now = LogTime::new(1_700_000_000_000).ok();
                let _ = ledger::attestation::verify(&a, &brand, policy(), now);
            }
        }
        21 => {
            if let Some(k) = decode::<node::admin::CreateKey>(b) {
                let _ = check_new_key(&k.name, &k.scopes);
            }
        }
        22 => {
            if let Ok((_old, proof, note)) = witness::parse_request(b) {
                assert!(proof.len() <= 64);
                assert!(b.ends_with(note.as_bytes()));
                let _ = ledger::checkpoint::SignedNote::parse(note);
            }
        }
        _ => {
            if let Some(s) = decode::<SignedStatement>(b) {
                let id = s.statement.agreement.clone();
                let _ = EntryKind::Statement(s).validate();
                let _ = check_id(&id);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&kind, b)) = data.split_first() {
        body(kind, b);
    }
});
