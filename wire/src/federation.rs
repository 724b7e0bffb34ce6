//! The federation routes' answers (spec/federation.md §3–§6): partners and their sync state,
//! cosigned checkpoints and attestation verdicts.

use ledger::types::{BrandId, LogTime, MemberId, TierName};
use serde::{Deserialize, Serialize};

/// A partner and its sync state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PartnerStatus {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub brand: BrandId,
    pub url: String,
    /// The pinned C2SP verifier key; null while unpinned.
    pub verifier_key: Option<String>,
    pub pinned: bool,
    /// Frozen by evidence until an operator clears it.
    pub frozen: bool,
    /// Entries of the partner's log verified and mirrored.
    pub verified_size: u64,
    /// Size of the partner's latest checkpoint seen.
    pub partner_size: u64,
    /// `partner_size - verified_size`.
    pub lag: u64,
    /// When the last sync round succeeded, ms since the epoch.
    pub last_sync_ms: Option<u64>,
    pub last_error: Option<String>,
    /// The size of this node's log the partner last cosigned.
    pub cosigned_size: u64,
    /// Pieces of evidence stored against the partner.
    pub evidence: u64,
}

/// `GET /v1/partners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = Partners))]
pub struct PartnerList {
    pub partners: Vec<PartnerStatus>,
}

/// The latest checkpoint with the cosignatures gathered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CosignedCheckpoint {
    pub size: u64,
    /// The signed note followed by the witnesses' cosignature lines.
    pub note: String,
    /// Witness key names that cosigned.
    pub cosigners: Vec<String>,
    /// Whether it meets the node's witness quorum (`federation.witness_quorum`).
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The verdict on an attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AttestationVerdict {
    pub valid: bool,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub brand: BrandId,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub member: MemberId,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub tier: TierName,
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub valid_until: Option<LogTime>,
    /// Witnesses (of this node's policy) that cosigned the checkpoint.
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(required = true))]
    pub cosigners: Vec<String>,
}
