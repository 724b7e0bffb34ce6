//! The bodies the HTTP API decodes (the request types of `loyalty_wire`, and those of
//! node/src/redemption/ and node/src/federation_routes.rs), the entries the handlers build from
//! them (`entry_kind` of each write request), and the checks the handlers run on them before
//! any state is read: the id validators (`api::check_id`, `redeem::check_redemption_id`,
//! `refunds::check_refund_id`), the witness's `add-checkpoint` body (`witness::parse_request`),
//! a new API key (`keys::check_new_key`) and a partner's settings (`federation::check_partner`).
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
use ledger::checkpoint::NoteSigner;
use ledger::checkpoint_vectors::seed;
use ledger::entry::{Entry, EntryKind, ENTRY_BYTES_MAX};
use ledger::statement::SignedStatement;
use ledger::types::{BrandId, EntryId, LogTime, MemberId};
use ledger::witness::WitnessPolicy;
use libfuzzer_sys::fuzz_target;
use loyalty_wire::keys::CreateKeyRequest;
use loyalty_wire::redemption::{PrepareBody, QuoteRequest, RefundRequest};
use loyalty_wire::writes as api;
use node::api::check_id;
use node::config::PartnerConfig;
use node::federation::{check_partner, witness, witness_verifier};
use node::federation_routes::AddPartner;
use node::keys::check_new_key;
use node::redemption::redeem::{self, check_redemption_id, derived_id};
use node::redemption::refunds::check_refund_id;
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
            if let Some(b) = decode::<api::EarnRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&member()));
            }
        }
        1 => {
            if let Some(b) = decode::<api::RedeemRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&member()));
            }
        }
        2 => {
            if let Some(b) = decode::<api::AdjustRequest>(b) {
                check_validated_entry(b.id.clone(), b.entry_kind(&member()));
            }
        }
        3 => {
            if let Some(b) = decode::<api::HoldRequest>(b) {
                if b.payee.is_some() && b.authorisation.is_none() {
                    return;
                }
                check_entry(b.id.clone(), b.entry_kind(&member()));
            }
        }
        4 => {
            if let Some(b) = decode::<api::AuthoriseRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&member()));
            }
        }
        5 => {
            if let Some(b) = decode::<api::PostRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&hold_id()));
            }
        }
        6 => {
            if let Some(b) = decode::<api::VoidRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&hold_id()));
            }
        }
        7 => {
            if let Some(b) = decode::<api::RefundRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind(&hold_id()));
            }
        }
        8 => {
            if let Some(b) = decode::<api::SetTiersRequest>(b) {
                check_validated_entry(b.id.clone(), b.entry_kind());
            }
        }
        9 => {
            if let Some(b) = decode::<api::SetExpiryRequest>(b) {
                check_validated_entry(b.id.clone(), b.entry_kind());
            }
        }
        10 => {
            if let Some(b) = decode::<api::SetRateCardRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind());
            }
        }
        11 => {
            if let Some(b) = decode::<api::SetFxRateRequest>(b) {
                check_entry(b.id.clone(), b.entry_kind());
            }
        }
        12 => {
            if let Some(b) = decode::<QuoteRequest>(b) {
                check_redemption(&b.redemption);
            }
        }
        13 => {
            if let Some(b) = decode::<PrepareBody>(b) {
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
            if let Some(p) = decode::<AddPartner>(b) {
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
            if let Some(k) = decode::<CreateKeyRequest>(b) {
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
