//! The federation routes of the fake node: partners, a mirrored member, evidence, the
//! cosigned checkpoint and tier attestations, over small logs built in memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger::attestation::{self, Attestation, Statement};
use ledger::checkpoint::{sign_checkpoint, Checkpoint, CosignatureSigner, NoteSigner};
use ledger::entry::{Earn, Entry, EntryKind, TierAttestation};
use ledger::merkle::MemoryTree;
use ledger::receipt::Receipt;
use ledger::witness::WitnessPolicy;
use serde_json::json;

use super::{entry, problem, pts, signer};
use crate::federation::{AddPartnerRequest, AttestationVerdict, PartnerStatus};

/// The fake node's own brand (its log key is [`super::signer`]).
pub(crate) const BRAND: &str = "brand-a";
/// The one configured partner.
pub(crate) const PARTNER: &str = "brand-b";
/// Valid-until of the attestation the fake node serves.
pub(crate) const VALID_UNTIL: u64 = 9_000_000;

/// The partner's log key.
pub(crate) fn partner_signer() -> NoteSigner {
    NoteSigner::from_seed("example.com/brand-b", &[8; 32]).unwrap()
}

/// Witness `n` (the fake node's log is cosigned by witnesses 1 and 2).
pub(crate) fn witness(n: u8) -> CosignatureSigner {
    CosignatureSigner::from_seed(&format!("example.com/witness-{n}"), &[20 + n; 32]).unwrap()
}

/// A signed checkpoint of `tree`, cosigned by `cosigners`.
pub(crate) fn cosigned_note(
    signer: &NoteSigner,
    tree: &MemoryTree,
    size: u64,
    cosigners: &[CosignatureSigner],
) -> String {
    let cp = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root: tree.root_at(size).unwrap(),
        extensions: vec![],
    };
    let mut note = sign_checkpoint(&cp, signer).unwrap();
    for w in cosigners {
        note.push_signature(w.cosign(&note.text, 1_700_000_000).unwrap())
            .unwrap();
    }
    note.to_string()
}

fn receipt(tree: &MemoryTree, entries: &[Entry], index: u64, note: String) -> Receipt {
    Receipt {
        index,
        entry: String::from_utf8(entries[index as usize].to_bytes()).unwrap(),
        inclusion_proof: tree
            .inclusion_proof(index, tree.size())
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint: note,
    }
}

fn log_of(entries: &[Entry]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for e in entries {
        tree.push(&e.to_bytes()).unwrap();
    }
    tree
}

/// A node with one frozen partner, one evidence record, and a log whose last entry
/// attests member `m1`'s gold tier, cosigned by witnesses 1 and 2.
pub(crate) struct FedNode {
    partners: Mutex<Vec<PartnerStatus>>,
    attestation: Attestation,
    cosigned: String,
    cosigned_size: u64,
    partner_member: serde_json::Value,
    /// Serve m1's attestation whatever member is asked for (a lying node).
    pub answer_for_other_member: AtomicBool,
    pub add_calls: AtomicUsize,
    pub verify_calls: AtomicUsize,
}

impl FedNode {
    pub fn new() -> Arc<FedNode> {
        let m1 = || "m1".parse().unwrap();
        let entries = vec![
            entry(
                1000,
                "e-1",
                EntryKind::Earn(Earn {
                    member: m1(),
                    points: pts(5_000),
                    qualifying: true,
                }),
            ),
            entry(
                1001,
                "sys.attest.m1.gold.9000000",
                EntryKind::TierAttestation(TierAttestation {
                    member: m1(),
                    tier: "gold".parse().unwrap(),
                    valid_until: Some(ledger::types::LogTime::new(VALID_UNTIL).unwrap()),
                }),
            ),
        ];
        let tree = log_of(&entries);
        let cosigned = cosigned_note(&signer(), &tree, 2, &[witness(1), witness(2)]);
        let attestation = Attestation {
            statement: Statement {
                brand: BRAND.parse().unwrap(),
                member: m1(),
                tier: "gold".parse().unwrap(),
                valid_until: Some(ledger::types::LogTime::new(VALID_UNTIL).unwrap()),
            },
            receipt: receipt(&tree, &entries, 1, cosigned.clone()),
        };

        let partner_entries = vec![
            entry(
                2000,
                "p-0",
                EntryKind::Earn(Earn {
                    member: "m2".parse().unwrap(),
                    points: pts(7),
                    qualifying: true,
                }),
            ),
            entry(
                2001,
                "p-1",
                EntryKind::Earn(Earn {
                    member: m1(),
                    points: pts(40),
                    qualifying: true,
                }),
            ),
        ];
        let ptree = log_of(&partner_entries);
        let pnote = cosigned_note(&partner_signer(), &ptree, 2, &[]);
        let partner_member = json!({
            "brand": PARTNER,
            "member": {"member":"m1","balance":40,"available":40,"pending":0,"tier":null,
                       "tier_valid_until":null,"lots":[{"lot":1,"remaining":40,"expires_at":null}]},
            "verified_size": 2,
            "checkpoint": pnote.clone(),
            "last_entry": receipt(&ptree, &partner_entries, 1, pnote),
        });
        let partner = PartnerStatus {
            brand: PARTNER.parse().unwrap(),
            url: "http://b.example:7700".into(),
            verifier_key: Some(partner_signer().verifier_key_string()),
            pinned: true,
            frozen: true,
            verified_size: 2,
            partner_size: 3,
            lag: 1,
            last_sync_ms: Some(1_700_000_000_000),
            last_error: Some("evidence fork".into()),
            cosigned_size: 2,
            evidence: 1,
        };
        Arc::new(FedNode {
            partners: Mutex::new(vec![partner]),
            attestation,
            cosigned,
            cosigned_size: 2,
            partner_member,
            answer_for_other_member: AtomicBool::new(false),
            add_calls: AtomicUsize::new(0),
            verify_calls: AtomicUsize::new(0),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/partners", get(partners))
            .route("/v1/admin/partners", post(add_partner))
            .route("/v1/admin/partners/{brand}/unfreeze", post(unfreeze))
            .route("/v1/partners/{brand}/members/{member}", get(partner_member))
            .route("/v1/evidence", get(evidence))
            .route("/v1/checkpoint/cosigned", get(cosigned))
            .route("/v1/members/{member}/attestation", post(get_attestation))
            .route("/v1/attestations/verify", post(verify_attestation))
            .with_state(self)
    }
}

type S = State<Arc<FedNode>>;

async fn partners(State(node): S) -> Json<serde_json::Value> {
    Json(json!({ "partners": *node.partners.lock().unwrap() }))
}

async fn add_partner(State(node): S, Json(req): Json<AddPartnerRequest>) -> Response {
    node.add_calls.fetch_add(1, Ordering::SeqCst);
    let status = PartnerStatus {
        brand: req.brand,
        url: req.url,
        pinned: req.verifier_key.is_some(),
        verifier_key: req.verifier_key,
        frozen: false,
        verified_size: 0,
        partner_size: 0,
        lag: 0,
        last_sync_ms: None,
        last_error: None,
        cosigned_size: 0,
        evidence: 0,
    };
    node.partners.lock().unwrap().push(status.clone());
    (StatusCode::CREATED, Json(status)).into_response()
}

async fn unfreeze(State(node): S, Path(brand): Path<String>) -> Response {
    let mut partners = node.partners.lock().unwrap();
    match partners.iter_mut().find(|p| p.brand.as_str() == brand) {
        Some(p) => {
            p.frozen = false;
            Json(p.clone()).into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn partner_member(State(node): S, Path((brand, member)): Path<(String, String)>) -> Response {
    if brand != PARTNER || member != "m1" {
        return problem(StatusCode::NOT_FOUND, "unknown_member");
    }
    Json(node.partner_member.clone()).into_response()
}

async fn evidence() -> Json<serde_json::Value> {
    Json(json!({"evidence": [{
        "id": 0, "brand": PARTNER, "kind": "fork", "detected_ms": 1_700_000_000_000u64,
        "notes": ["note one", "note two"], "detail": "two roots for size 3"
    }]}))
}

async fn cosigned(State(node): S) -> Json<serde_json::Value> {
    Json(json!({
        "size": node.cosigned_size,
        "note": node.cosigned,
        "cosigners": [witness(1).name(), witness(2).name()],
        "final": true,
    }))
}

async fn get_attestation(State(node): S, Path(member): Path<String>) -> Response {
    if member != "m1" && !node.answer_for_other_member.load(Ordering::SeqCst) {
        return problem(StatusCode::NOT_FOUND, "unknown_member");
    }
    Json(node.attestation.clone()).into_response()
}

async fn verify_attestation(State(node): S, Json(att): Json<Attestation>) -> Response {
    node.verify_calls.fetch_add(1, Ordering::SeqCst);
    let policy = WitnessPolicy {
        log: signer().verifier(),
        witnesses: vec![witness(1).verifier(), witness(2).verifier()],
        quorum: 2,
    };
    match attestation::verify(&att, &BRAND.parse().unwrap(), &policy, None) {
        Ok(v) => Json(AttestationVerdict {
            valid: true,
            brand: v.statement.brand.clone(),
            member: v.statement.member.clone(),
            tier: v.statement.tier.clone(),
            valid_until: v.statement.valid_until,
            cosigners: v.cosigners(),
        })
        .into_response(),
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, e.code()),
    }
}
