//! API keys: scopes, and the admin routes' bodies (spec/api.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read members, holds, history and policy.
    Read,
    /// Earn points.
    Earn,
    /// Redeem, hold, post, void, refund.
    Redeem,
    /// Everything, including adjustments, policy and keys.
    Admin,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "earn" => Ok(Scope::Earn),
            "redeem" => Ok(Scope::Redeem),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("unknown scope {s:?} (read, earn, redeem, admin)")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Earn => "earn",
            Scope::Redeem => "redeem",
            Scope::Admin => "admin",
        })
    }
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = CreateKey))]
pub struct CreateKeyRequest {
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// A new key: shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    pub key_id: String,
    /// The secret key. It is not stored and cannot be shown again.
    pub key: String,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("CreatedKey")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = KeyRecord))]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Unix ms.
    pub created_at: u64,
    pub revoked: bool,
}

/// Every key, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// Answer to a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = Revoked))]
pub struct RevokedKey {
    pub key_id: String,
    pub revoked: bool,
}
