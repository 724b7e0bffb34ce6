//! Federation routes: partners, verified mirror reads, evidence, the cosigned checkpoint and
//! the witness endpoint (C2SP tlog-witness) partners submit their checkpoints to.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ledger::receipt::Receipt;
use ledger::types::{BrandId, MemberId};
use ledger_store::log::receipt_from_store;

use loyalty_wire::ErrorCode;
pub use loyalty_wire::{AttestationVerdict, CosignedCheckpoint, PartnerList, PartnerStatus};

use crate::app::{authorize, parse_param, scope, ApiJson, App, AppState, Authorized};
use crate::config::PartnerConfig;
use crate::federation::{witness, Evidence, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::reads::Page;
use crate::views::{member_view, MemberView};

/// The federation's routes.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(cosigned))
        .routes(routes!(list))
        .routes(routes!(mirrored_member))
        .routes(routes!(add))
        .routes(routes!(unfreeze))
        .routes(routes!(evidence))
        .routes(routes!(attestation))
        .routes(routes!(verify_attestation))
        // C2SP tlog-witness, not part of this API's document.
        .route("/v1/witness/add-checkpoint", post(add_checkpoint))
}

/// Adds or updates a partner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPartner {
    pub brand: String,
    pub url: String,
    /// The partner's C2SP verifier key, obtained out of band; omit to list it unpinned.
    pub verifier_key: Option<String>,
}

pub fn status(p: &Partner) -> PartnerStatus {
    let s = p.status.lock().expect("status lock").clone();
    let verified = p.verified_size();
    PartnerStatus {
        brand: p.brand.clone(),
        url: p.url.clone(),
        verifier_key: p.verifier.as_ref().map(|v| v.to_string()),
        pinned: p.verifier.is_some(),
        frozen: p.frozen.load(Ordering::Acquire),
        verified_size: verified,
        partner_size: s.partner_size.max(verified),
        lag: s.partner_size.saturating_sub(verified),
        last_sync_ms: s.last_sync_ms,
        last_error: s.last_error,
        cosigned_size: p.cosigned_size.load(Ordering::Acquire),
        evidence: p.evidence.load(Ordering::Relaxed),
    }
}

#[utoipa::path(get, path = "/v1/partners", responses((status = 200, body = PartnerList)), tag = "federation")]
pub async fn list(
    State(app): AppState,
    _: Authorized<scope::Read>,
) -> Result<Json<PartnerList>, ApiError> {
    Ok(Json(PartnerList {
        partners: app
            .federation
            .partners()
            .iter()
            .map(|p| status(p))
            .collect(),
    }))
}

#[utoipa::path(post, path = "/v1/admin/partners", request_body = AddPartner,
    responses((status = 201, body = PartnerStatus)), tag = "federation")]
pub async fn add(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AddPartner>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let brand: BrandId = req
        .brand
        .parse()
        .map_err(|e| ApiError::bad_body(format!("brand: {e}")))?;
    let p = app
        .federation
        .upsert_partner(PartnerConfig {
            brand,
            url: req.url,
            verifier_key: req.verifier_key,
        })
        .await?;
    tracing::info!(partner = %p.brand, pinned = p.verifier.is_some(), "partner set");
    Ok((StatusCode::CREATED, Json(status(&p))).into_response())
}

#[utoipa::path(post, path = "/v1/admin/partners/{brand}/unfreeze", params(("brand" = String, Path)),
    responses((status = 200, body = PartnerStatus)), tag = "federation")]
pub async fn unfreeze(
    State(app): AppState,
    headers: HeaderMap,
    Path(brand): Path<String>,
) -> Result<Json<PartnerStatus>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let brand: BrandId = parse_param("brand", &brand)?;
    let p = app.federation.unfreeze(&brand).await?;
    Ok(Json(status(&p)))
}

/// A member as the partner's verified mirror shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MirroredMember {
    pub brand: String,
    pub member: MemberView,
    /// Entries of the partner's log the mirror verified.
    pub verified_size: u64,
    /// The partner's signed checkpoint the mirror accepted.
    pub checkpoint: String,
    /// The member's latest entry with its inclusion proof under `checkpoint`.
    #[schema(value_type = Object)]
    pub last_entry: Option<Receipt>,
}

#[utoipa::path(get, path = "/v1/partners/{brand}/members/{member}",
    params(("brand" = String, Path), ("member" = String, Path)),
    responses((status = 200, body = MirroredMember)), tag = "federation")]
pub async fn mirrored_member(
    State(app): AppState,
    headers: HeaderMap,
    Path((brand, member)): Path<(String, String)>,
) -> Result<Json<MirroredMember>, ApiError> {
    authorize(&app, &headers, Scope::Read)?;
    let brand: BrandId = parse_param("brand", &brand)?;
    let member: MemberId = parse_param("member", &member)?;
    let p = app.federation.partner(&brand).ok_or_else(|| {
        ApiError::not_found(ErrorCode::UnknownPartner, format!("no partner {brand}"))
    })?;
    let store = p.mirror_store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::PartnerUnpinned,
            format!("{brand} has no pinned key, so nothing of it is mirrored"),
        )
    })?;
    tokio::task::spawn_blocking(move || {
        // The checkpoint first: everything read below is at or below it (the mirror only grows).
        let (size, note) = store
            .latest_checkpoint()
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found(
                    ErrorCode::NotMirrored,
                    format!("nothing of {brand} is verified yet"),
                )
            })?;
        let view = member_view(&store, &member)?.ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownMember,
                format!("member {member} has no points at {brand}"),
            )
        })?;
        // The member's latest entry under the checkpoint: one seek, whatever its history.
        let last = store
            .last_history_before(&member, size)
            .map_err(ApiError::internal)?;
        let last_entry = match last {
            Some(i) => {
                Some(receipt_from_store(&store, i, size, &note).map_err(ApiError::internal)?)
            }
            None => None,
        };
        Ok(Json(MirroredMember {
            brand: brand.to_string(),
            member: view,
            verified_size: size,
            checkpoint: note,
            last_entry,
        }))
    })
    .await
    .map_err(ApiError::internal)?
}

/// `GET /v1/evidence`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceList {
    pub evidence: Vec<Evidence>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/evidence", params(Page),
    responses((status = 200, body = EvidenceList)), tag = "federation")]
pub async fn evidence(
    State(app): AppState,
    // The query is read first, then the key (the order of the answers).
    Query(page): Query<Page>,
    _: Authorized<scope::Read>,
) -> Result<Json<EvidenceList>, ApiError> {
    let (after, limit) = page.parse()?;
    let list = app
        .federation
        .evidence(after, limit)
        .map_err(ApiError::internal)?;
    let next_cursor = (list.len() == limit)
        .then(|| list.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(EvidenceList {
        evidence: list,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/checkpoint/cosigned",
    responses((status = 200, body = CosignedCheckpoint)), tag = "log")]
pub async fn cosigned(State(app): AppState) -> Json<CosignedCheckpoint> {
    Json(cosigned_checkpoint(&app))
}

/// The latest cosigned checkpoint, or the latest signed one while none is cosigned.
pub(crate) fn cosigned_checkpoint(app: &crate::app::App) -> CosignedCheckpoint {
    let quorum = app.federation.settings.witness_quorum;
    let c = app
        .federation
        .cosigned
        .read()
        .expect("cosigned lock")
        .clone();
    match c {
        Some(c) => CosignedCheckpoint {
            is_final: c.cosigners.len() >= quorum,
            size: c.size,
            note: c.note,
            cosigners: c.cosigners,
        },
        None => {
            let cp = app.shared.checkpoint();
            CosignedCheckpoint {
                size: cp.size,
                note: cp.note.clone(),
                cosigners: Vec::new(),
                is_final: quorum == 0,
            }
        }
    }
}

/// `POST /v1/members/{member}/attestation` (scope `earn`): logs the member's tier statement
/// (once per statement) and answers it with its receipt under the latest cosigned checkpoint.
/// A write, so a write scope and a POST: read routes never write.
#[utoipa::path(post, path = "/v1/members/{member}/attestation", params(("member" = String, Path)),
    responses((status = 200, description = "ledger::attestation::Attestation", body = Object)),
    tag = "federation")]
pub async fn attestation(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
) -> Result<Json<ledger::attestation::Attestation>, ApiError> {
    use ledger::entry::{EntryKind, TierAttestation};
    use sha2::{Digest, Sha256};
    authorize(&app, &headers, Scope::Earn)?;
    let member: MemberId = parse_param("member", &member)?;
    let view = member_view(&app.store, &member)?.ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::UnknownMember,
            format!("member {member} has no points"),
        )
    })?;
    let tier = view.tier.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoTierPolicy,
            "this brand has no tier policy, so there is no tier to attest",
        )
    })?;
    let valid_until = view.tier_valid_until;
    // One entry per (member, tier, valid_until): asking again returns the same statement.
    let digest = Sha256::digest(
        format!(
            "{member}\n{tier}\n{}",
            valid_until.map_or("none".to_string(), |u| u.get().to_string())
        )
        .as_bytes(),
    );
    let id: ledger::types::EntryId = format!("sys.attest.{}", hex::encode(&digest[..16]))
        .parse()
        .map_err(ApiError::internal)?;
    let committed = app
        .sequencer
        .submit(ledger_store::log::Write {
            id,
            kind: EntryKind::TierAttestation(TierAttestation {
                member: member.clone(),
                tier: tier.clone(),
                valid_until,
            }),
        })
        .await?;
    // Ask the witnesses at once; wait a bounded time for them.
    let cosigned = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        witness::gather(&app.federation),
    )
    .await
    .ok()
    .flatten();
    let (size, note) = match cosigned.filter(|c| c.size > committed.index) {
        Some(c) => (c.size, c.note),
        None => (committed.checkpoint.size, committed.checkpoint.note.clone()),
    };
    let store = app.store.clone();
    let index = committed.index;
    let receipt =
        tokio::task::spawn_blocking(move || receipt_from_store(&store, index, size, &note))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    Ok(Json(ledger::attestation::Attestation {
        statement: ledger::attestation::Statement {
            brand: app.config.brand.clone(),
            member,
            tier,
            valid_until,
        },
        receipt,
    }))
}

/// `POST /v1/attestations/verify`: checks an attestation with this node's pinned keys and
/// witness policy (spec/federation.md §6).
#[utoipa::path(post, path = "/v1/attestations/verify",
    request_body(content = Object, description = "ledger::attestation::Attestation"),
    responses((status = 200, body = AttestationVerdict)), tag = "federation")]
pub async fn verify_attestation(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(att): ApiJson<ledger::attestation::Attestation>,
) -> Result<Json<AttestationVerdict>, ApiError> {
    authorize(&app, &headers, Scope::Read)?;
    let fed = &app.federation;
    let brand = att.statement.brand.clone();
    let log_key = if brand == fed.brand {
        ledger::checkpoint::NoteVerifier::parse(&app.verifier_key).map_err(ApiError::internal)?
    } else {
        let p = fed.partner(&brand).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownPartner,
                format!("{brand} is not a partner of this node"),
            )
        })?;
        if p.frozen.load(Ordering::Acquire) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::PartnerFrozen,
                format!("the partnership with {brand} is frozen by evidence"),
            ));
        }
        p.verifier.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::PartnerUnpinned,
                format!("{brand} has no pinned key"),
            )
        })?
    };
    // Witnesses: this node and every pinned partner other than the attesting brand.
    let mut witnesses = vec![fed.cosigner.verifier()];
    witnesses.extend(
        fed.partners()
            .iter()
            .filter(|p| p.brand != brand)
            .filter_map(|p| p.witness.clone()),
    );
    let policy = ledger::witness::WitnessPolicy {
        log: log_key,
        witnesses,
        quorum: fed.settings.witness_quorum,
    };
    let v = ledger::attestation::verify(&att, &brand, &policy, Some(crate::sequencer::now()))
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::parse(e.code()),
                e.to_string(),
            )
        })?;
    Ok(Json(AttestationVerdict {
        valid: true,
        brand: v.statement.brand.clone(),
        member: v.statement.member.clone(),
        tier: v.statement.tier.clone(),
        valid_until: v.statement.valid_until,
        cosigners: v.cosigners(),
    }))
}

/// `POST /v1/witness/add-checkpoint` (C2SP tlog-witness), from a pinned partner only.
pub async fn add_checkpoint(
    State(app): AppState,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let partner = crate::federation::peer::verify(&app.federation, &method, path, &headers, &body)?;
    let (status, content_type, text) =
        match witness::add_checkpoint(&app.federation, partner, &body).await? {
            witness::WitnessAnswer::Cosignature(line) => {
                (StatusCode::OK, "text/x.tlog.cosignature", line)
            }
            witness::WitnessAnswer::SizeMismatch(size) => (
                StatusCode::CONFLICT,
                "text/x.tlog.size",
                format!("{size}\n"),
            ),
        };
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        text,
    )
        .into_response())
}
