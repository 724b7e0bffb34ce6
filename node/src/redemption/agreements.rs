//! Agreements between brands (spec/redemption.md §2): each brand's operator approves the same
//! terms on its own node; the node that approves second completes the exchange of signatures,
//! and both nodes log the co-signed agreement (entry id = the agreement id, so logging is
//! idempotent).
//!
//! Invariants: a node signs only terms its own operator approved and in which it is a party;
//! it logs an agreement only when both signatures verify with the keys it pins (its own and
//! the partner's); peer messages are signed peer requests from a pinned, unfrozen partner.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;

use ledger::agreement::{sign, AgreementTerms, SignedAgreement};
use ledger::checkpoint::NoteVerifier;
use ledger::entry::EntryKind;
use ledger::receipt::Receipt;
use ledger_store::log::Write;

pub use loyalty_wire::redemption::AgreementOutcome;

use crate::app::App;
use crate::federation::client::{PeerClient, Reply};
use crate::federation::{Federation, Partner};
use crate::redemption_error::RedemptionError;

const APPROVED_PREFIX: &[u8] = b"agreement-approved/";
/// The peer route a node sends its signed approval to.
pub const PEER_PATH: &str = "/v1/peer/agreements";

fn approved_key(id: &str) -> Vec<u8> {
    [APPROVED_PREFIX, id.as_bytes()].concat()
}

fn our_key(app: &App) -> Result<NoteVerifier, RedemptionError> {
    NoteVerifier::parse(&app.verifier_key).map_err(RedemptionError::internal)
}

/// The other party of `terms`, which must be a pinned, unfrozen partner.
fn counterparty(fed: &Federation, terms: &AgreementTerms) -> Result<Arc<Partner>, RedemptionError> {
    if !terms.is_party(&fed.brand) {
        return Err(RedemptionError::NotAParty(fed.brand.clone()));
    }
    let other = terms
        .brands
        .iter()
        .find(|b| **b != fed.brand)
        .expect("validated terms name two brands");
    let p = fed
        .partner(other)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| {
            RedemptionError::PartnerNotPinned(format!(
                "{other} is not a pinned partner of this node"
            ))
        })?;
    if p.frozen.load(Ordering::Acquire) {
        return Err(RedemptionError::PartnerFrozen(other.clone()));
    }
    Ok(p)
}

/// Orders signatures as the terms order the brands (both nodes log identical bytes).
fn ordered(
    terms: &AgreementTerms,
    mut sigs: Vec<ledger::agreement::AgreementSignature>,
) -> SignedAgreement {
    sigs.sort_by_key(|s| terms.brands.iter().position(|b| *b == s.brand));
    sigs.dedup_by(|a, b| a.brand == b.brand);
    SignedAgreement {
        terms: terms.clone(),
        signatures: sigs,
    }
}

/// Verifies both signatures with the pinned keys and logs the agreement (idempotent).
async fn log_agreement(
    app: &App,
    partner: &Partner,
    agreement: &SignedAgreement,
) -> Result<Receipt, RedemptionError> {
    let ours = our_key(app)?;
    let theirs = partner.verifier.clone().expect("counterparty is pinned");
    agreement
        .verify(|b| {
            if *b == app.federation.brand {
                Some(ours.clone())
            } else if *b == partner.brand {
                Some(theirs.clone())
            } else {
                None
            }
        })
        .map_err(RedemptionError::Agreement)?;
    let committed = app
        .sequencer
        .submit(Write {
            id: agreement.terms.agreement.clone(),
            kind: EntryKind::Agreement(agreement.clone()),
        })
        .await?;
    ledger_store::log::receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(RedemptionError::internal)
}

/// This node's operator approves `terms`: the node signs them, keeps the approval, and sends
/// it to the partner; if the partner approved the same terms, both nodes log the co-signed
/// agreement.
pub(super) async fn approve(
    app: &App,
    terms: AgreementTerms,
) -> Result<AgreementOutcome, RedemptionError> {
    terms.validate().map_err(RedemptionError::Agreement)?;
    let fed = &app.federation;
    let partner = counterparty(fed, &terms)?;
    let own = sign(&terms, &fed.brand, &fed.signing_key, &app.verifier_key);
    let mine = SignedAgreement {
        terms: terms.clone(),
        signatures: vec![own.clone()],
    };
    // The approval is durable before it leaves the node; approving other terms under the
    // same id is refused.
    let key = approved_key(terms.agreement.as_str());
    if let Some(v) = app
        .store
        .local_get(&key)
        .map_err(RedemptionError::internal)?
    {
        let prior: SignedAgreement =
            serde_json::from_slice(&v).map_err(RedemptionError::internal)?;
        if prior.terms != terms {
            return Err(RedemptionError::AgreementTermsDiffer(
                "another approval with this agreement id has other terms",
            ));
        }
    } else {
        app.store
            .local_put(
                &key,
                &serde_json::to_vec(&mine).map_err(RedemptionError::internal)?,
            )
            .map_err(RedemptionError::internal)?;
    }
    let body = serde_json::to_vec(&mine).map_err(RedemptionError::internal)?;
    match PeerClient::new(fed, &partner)
        .post_json(PEER_PATH, body)
        .await
    {
        Ok(Reply {
            status: StatusCode::OK,
            body: answer,
        }) => {
            let theirs: SignedAgreement = serde_json::from_slice(&answer).map_err(|_| {
                RedemptionError::PartnerBadAnswer(
                    "the partner's answer is not a signed agreement".into(),
                )
            })?;
            if theirs.terms != terms {
                return Err(RedemptionError::PartnerBadAnswer(
                    "the partner answered other terms".into(),
                ));
            }
            let full = ordered(&terms, theirs.signatures.clone());
            let receipt = log_agreement(app, &partner, &full).await?;
            tracing::info!(agreement = %terms.agreement, partner = %partner.brand, "agreement logged");
            Ok(AgreementOutcome {
                status: "logged".into(),
                agreement: full,
                receipt: Some(receipt),
            })
        }
        other => {
            let answer = match other {
                Ok(r) => r.body,
                Err(e) => e.to_string().into_bytes(),
            };
            tracing::info!(agreement = %terms.agreement, partner = %partner.brand,
                answer = %String::from_utf8_lossy(&answer[..answer.len().min(300)]),
                "agreement approved here; pending the partner's approval");
            Ok(AgreementOutcome {
                status: "pending".into(),
                agreement: mine,
                receipt: None,
            })
        }
    }
}

/// The partner's signed approval (a signed peer request of `sender`): the co-signed
/// agreement, logged here, when this node's operator approved the same terms.
pub(super) async fn peer_approval(
    app: &App,
    sender: &Partner,
    theirs: SignedAgreement,
) -> Result<SignedAgreement, RedemptionError> {
    let fed = &app.federation;
    theirs
        .terms
        .validate()
        .map_err(RedemptionError::Agreement)?;
    let partner = counterparty(fed, &theirs.terms)?;
    if partner.brand != sender.brand {
        return Err(RedemptionError::SenderNotAParty);
    }
    theirs
        .verify_signature_of(&sender.brand)
        .map_err(RedemptionError::Agreement)?;
    let approved = match app
        .store
        .local_get(&approved_key(theirs.terms.agreement.as_str()))
        .map_err(RedemptionError::internal)?
    {
        Some(v) => {
            serde_json::from_slice::<SignedAgreement>(&v).map_err(RedemptionError::internal)?
        }
        None => return Err(RedemptionError::AgreementNotApproved),
    };
    if approved.terms != theirs.terms {
        return Err(RedemptionError::AgreementTermsDiffer(
            "this brand approved other terms under this agreement id",
        ));
    }
    let mut sigs = approved.signatures.clone();
    sigs.extend(
        theirs
            .signatures
            .iter()
            .filter(|s| s.brand == sender.brand)
            .cloned(),
    );
    let full = ordered(&theirs.terms, sigs);
    log_agreement(app, &partner, &full).await?;
    tracing::info!(agreement = %full.terms.agreement, partner = %partner.brand, "agreement logged");
    Ok(full)
}
