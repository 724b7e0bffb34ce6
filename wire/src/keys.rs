//! API keys: scopes, and the admin routes' bodies (spec/api.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an API key may do (admin implies every scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
pub struct CreateKeyRequest {
    /// A name for people (which app uses the key).
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

/// A key just created; `key` is shown this once and never again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The key's public id.
    pub key_id: String,
    /// The secret API key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
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

/// One API key, as listed (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's public id.
    pub key_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Creation time, Unix ms.
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// Every key.
    pub keys: Vec<KeyInfo>,
}

/// `DELETE /v1/admin/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    /// The revoked key's id.
    pub key_id: String,
    /// Always true.
    pub revoked: bool,
}

