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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use ledger::agreement::{sign, AgreementTerms, SignedAgreement};
use ledger::checkpoint::NoteVerifier;
use ledger::entry::EntryKind;
use ledger::log::Write;
use ledger::receipt::Receipt;

pub use loyalty_wire::redemption::AgreementOutcome;
use loyalty_wire::ErrorCode;

use crate::app::{authorize, ApiJson, App, AppState};
use crate::federation::client::{PeerClient, Reply};
use crate::federation::{peer, Federation, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;

const APPROVED_PREFIX: &[u8] = b"agreement-approved/";
/// The peer route a node sends its signed approval to.
pub const PEER_PATH: &str = "/v1/peer/agreements";

fn approved_key(id: &str) -> Vec<u8> {
    [APPROVED_PREFIX, id.as_bytes()].concat()
}

fn our_key(app: &App) -> Result<NoteVerifier, ApiError> {
    NoteVerifier::parse(&app.verifier_key).map_err(ApiError::internal)
}

/// The other party of `terms`, which must be a pinned, unfrozen partner.
fn counterparty(fed: &Federation, terms: &AgreementTerms) -> Result<Arc<Partner>, ApiError> {
    if !terms.is_party(&fed.brand) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::AgreementNotAParty,
            format!("{} is not a party to these terms", fed.brand),
        ));
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
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownPartner,
                format!("{other} is not a pinned partner of this node"),
            )
        })?;
    if p.frozen.load(Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PartnerFrozen,
            format!("the partnership with {other} is frozen by evidence"),
        ));
    }
    Ok(p)
}

fn invalid(e: ledger::agreement::AgreementError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::parse(e.code()),
        e.to_string(),
    )
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
) -> Result<Receipt, ApiError> {
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
        .map_err(invalid)?;
    let committed = app
        .sequencer
        .submit(Write {
            id: agreement.terms.agreement.clone(),
            kind: EntryKind::Agreement(agreement.clone()),
        })
        .await?;
    ledger::log::receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(ApiError::internal)
}

/// `POST /v1/admin/agreements`: this node's operator approves the terms. The node signs them,
/// keeps the approval, and sends it to the partner; if the partner approved the same terms,
/// both nodes log the co-signed agreement.
#[utoipa::path(post, path = "/v1/admin/agreements",
    request_body(content = Object, description = "ledger::agreement::AgreementTerms"),
    responses((status = 200, body = AgreementOutcome)), tag = "federation")]
pub async fn approve(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(terms): ApiJson<AgreementTerms>,
) -> Result<Json<AgreementOutcome>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    terms.validate().map_err(invalid)?;
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
    if let Some(v) = app.store.local_get(&key).map_err(ApiError::internal)? {
        let prior: SignedAgreement = serde_json::from_slice(&v).map_err(ApiError::internal)?;
        if prior.terms != terms {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AgreementTermsDiffer,
                "another approval with this agreement id has other terms",
            ));
        }
    } else {
        app.store
            .local_put(
                &key,
                &serde_json::to_vec(&mine).map_err(ApiError::internal)?,
            )
            .map_err(ApiError::internal)?;
    }
    let body = serde_json::to_vec(&mine).map_err(ApiError::internal)?;
    match PeerClient::new(fed, &partner)
        .post_json(PEER_PATH, body)
        .await
    {
        Ok(Reply {
            status: StatusCode::OK,
            body: answer,
        }) => {
            let theirs: SignedAgreement = serde_json::from_slice(&answer).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::PartnerBadAnswer,
                    "the partner's answer is not a signed agreement",
                )
            })?;
            if theirs.terms != terms {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::PartnerBadAnswer,
                    "the partner answered other terms",
                ));
            }
            let full = ordered(&terms, theirs.signatures.clone());
            let receipt = log_agreement(&app, &partner, &full).await?;
            tracing::info!(agreement = %terms.agreement, partner = %partner.brand, "agreement logged");
            Ok(Json(AgreementOutcome {
                status: "logged".into(),
                agreement: full,
                receipt: Some(receipt),
            }))
        }
        other => {
            let answer = match other {
                Ok(r) => r.body,
                Err(e) => e.to_string().into_bytes(),
            };
            tracing::info!(agreement = %terms.agreement, partner = %partner.brand,
                answer = %String::from_utf8_lossy(&answer[..answer.len().min(300)]),
                "agreement approved here; pending the partner's approval");
            Ok(Json(AgreementOutcome {
                status: "pending".into(),
                agreement: mine,
                receipt: None,
            }))
        }
    }
}

/// `POST /v1/peer/agreements` (signed peer request): the partner's signed approval. Answered
/// with the co-signed agreement, logged here, when this node's operator approved the same terms.
pub async fn peer_approval(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fed = &app.federation;
    let (sender, theirs): (_, SignedAgreement) =
        peer::verify_json(fed, &method, &uri, &headers, &body, "signed agreement")?;
    theirs.terms.validate().map_err(invalid)?;
    let partner = counterparty(fed, &theirs.terms)?;
    if partner.brand != sender.brand {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AgreementNotAParty,
            "the sender is not the other party of these terms",
        ));
    }
    theirs.verify_signature_of(&sender.brand).map_err(invalid)?;
    let approved = match app
        .store
        .local_get(&approved_key(theirs.terms.agreement.as_str()))
        .map_err(ApiError::internal)?
    {
        Some(v) => serde_json::from_slice::<SignedAgreement>(&v).map_err(ApiError::internal)?,
        None => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AgreementNotApproved,
                "this brand's operator has not approved these terms (yet)",
            ))
        }
    };
    if approved.terms != theirs.terms {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AgreementTermsDiffer,
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
    log_agreement(&app, &partner, &full).await?;
    tracing::info!(agreement = %full.terms.agreement, partner = %partner.brand, "agreement logged");
    Ok((StatusCode::OK, Json(full)).into_response())
}
