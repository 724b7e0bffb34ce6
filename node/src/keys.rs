//! API keys for apps: created with scopes, shown once, stored as SHA-256 hashes in the node's
//! local records (never in the log), revocable.
//!
//! Key format: `lk_<key id: 16 hex>_<secret: 64 hex>`. Invariant: the secret is never stored;
//! a presented key is accepted only if its id exists, is not revoked, and the SHA-256 of the
//! whole key equals the stored hash (compared in constant time).

use std::collections::HashMap;
use std::sync::RwLock;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use ledger_store::store::{Store, StoreError};

pub const PREFIX: &[u8] = b"apikey/";
/// Most API keys a node holds.
pub const KEYS_MAX: usize = 10_000;
/// Longest key name.
pub const KEY_NAME_LEN_MAX: usize = 64;

/// What a key may do.
pub use loyalty_wire::Scope;

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Unix ms.
    pub created_at: u64,
    pub revoked: bool,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
}

impl KeyRecord {
    /// Whether the key grants `scope` (admin grants everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// The record without its hash, for listing.
    pub fn public(&self) -> KeyRecord {
        KeyRecord {
            hash: String::new(),
            ..self.clone()
        }
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid key request: {0}")]
    Invalid(String),
    #[error("no key {0}")]
    Unknown(String),
}

/// Checks a new key's request: a name of 1 to [`KEY_NAME_LEN_MAX`] bytes without control
/// characters, and at least one scope.
pub fn check_new_key(name: &str, scopes: &[Scope]) -> Result<(), KeyError> {
    if name.is_empty() || name.len() > KEY_NAME_LEN_MAX || name.chars().any(|c| c.is_control()) {
        return Err(KeyError::Invalid(format!(
            "name must be 1 to {KEY_NAME_LEN_MAX} printable characters"
        )));
    }
    if scopes.is_empty() {
        return Err(KeyError::Invalid("at least one scope is required".into()));
    }
    Ok(())
}

/// The key registry: a cache over the store's local records.
pub struct Keys {
    store: Store,
    by_id: RwLock<HashMap<String, KeyRecord>>,
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Keys {
    /// Loads every key from the store.
    pub fn load(store: Store) -> Result<Keys, KeyError> {
        let mut by_id = HashMap::new();
        for (_, v) in store.local_scan(PREFIX, KEYS_MAX)? {
            let r: KeyRecord = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("api key record: {e}")))?;
            by_id.insert(r.key_id.clone(), r);
        }
        Ok(Keys {
            store,
            by_id: RwLock::new(by_id),
        })
    }

    /// Reads every key from the store again: on a standby, whose key records the primary
    /// writes (node/src/ha/local/).
    pub fn reload(&self) -> Result<(), KeyError> {
        let fresh = Keys::load(self.store.clone())?;
        let by_id = fresh.by_id.into_inner().expect("key cache lock");
        *self.by_id.write().expect("key cache lock") = by_id;
        Ok(())
    }

    fn save(&self, r: &KeyRecord) -> Result<(), KeyError> {
        let mut k = PREFIX.to_vec();
        k.extend_from_slice(r.key_id.as_bytes());
        self.store
            .local_put(&k, &serde_json::to_vec(r).expect("key records serialize"))?;
        self.by_id
            .write()
            .expect("key cache lock")
            .insert(r.key_id.clone(), r.clone());
        Ok(())
    }

    /// Creates a key; returns the full key (to show once) and its record. Durable on return.
    pub fn create(
        &self,
        name: &str,
        scopes: &[Scope],
        now_ms: u64,
    ) -> Result<(String, KeyRecord), KeyError> {
        check_new_key(name, scopes)?;
        if self.by_id.read().expect("key cache lock").len() >= KEYS_MAX {
            return Err(KeyError::Invalid(format!(
                "a node holds at most {KEYS_MAX} keys"
            )));
        }
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut secret);
        let key_id = hex::encode(id);
        let key = format!("lk_{key_id}_{}", hex::encode(secret));
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let r = KeyRecord {
            key_id,
            name: name.to_owned(),
            scopes,
            created_at: now_ms,
            revoked: false,
            hash: hash_key(&key),
        };
        self.save(&r)?;
        Ok((key, r))
    }

    /// Every key, without hashes, by id.
    pub fn list(&self) -> Vec<KeyRecord> {
        let mut v: Vec<KeyRecord> = self
            .by_id
            .read()
            .expect("key cache lock")
            .values()
            .map(KeyRecord::public)
            .collect();
        v.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        v
    }

    /// Revokes a key. Durable on return; the key is refused from then on.
    pub fn revoke(&self, key_id: &str) -> Result<KeyRecord, KeyError> {
        let mut r = self
            .by_id
            .read()
            .expect("key cache lock")
            .get(key_id)
            .cloned()
            .ok_or_else(|| KeyError::Unknown(key_id.to_owned()))?;
        r.revoked = true;
        self.save(&r)?;
        Ok(r.public())
    }

    /// The record of a presented key, if it is valid and not revoked.
    pub fn authenticate(&self, key: &str) -> Option<KeyRecord> {
        let rest = key.strip_prefix("lk_")?;
        let (id, _) = rest.split_once('_')?;
        let cache = self.by_id.read().expect("key cache lock");
        let r = cache.get(id)?;
        let ok: bool = hash_key(key).as_bytes().ct_eq(r.hash.as_bytes()).into();
        (ok && !r.revoked).then(|| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authenticate_until_revoked_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = Keys::load(store.clone()).unwrap();
        let (key, rec) = keys.create("pos", &[Scope::Earn, Scope::Read], 1).unwrap();
        assert!(keys.authenticate(&key).unwrap().allows(Scope::Earn));
        assert!(!keys.authenticate(&key).unwrap().allows(Scope::Redeem));
        assert!(keys.authenticate(&key.replace("lk_", "lk_0")).is_none());
        let mut forged = key.clone();
        forged.pop();
        forged.push('x');
        assert!(keys.authenticate(&forged).is_none());
        let reloaded = Keys::load(store.clone()).unwrap();
        assert!(reloaded.authenticate(&key).is_some());
        assert!(reloaded.list()[0].hash.is_empty());
        reloaded.revoke(&rec.key_id).unwrap();
        assert!(reloaded.authenticate(&key).is_none());
        assert!(Keys::load(store).unwrap().authenticate(&key).is_none());
    }

    #[test]
    fn key_creation_refuses_bad_names_and_empty_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load(Store::open(dir.path()).unwrap()).unwrap();
        assert!(keys.create("", &[Scope::Read], 1).is_err());
        assert!(keys.create("x", &[], 1).is_err());
        assert!(keys.create("a\nb", &[Scope::Read], 1).is_err());
    }

    #[test]
    fn new_key_check_takes_printable_names_up_to_the_limit() {
        assert!(check_new_key("pos-1 (shop)", &[Scope::Read]).is_ok());
        assert!(check_new_key(&"n".repeat(KEY_NAME_LEN_MAX), &[Scope::Admin]).is_ok());
        assert!(check_new_key(&"n".repeat(KEY_NAME_LEN_MAX + 1), &[Scope::Admin]).is_err());
        assert!(check_new_key("tab\there", &[Scope::Read]).is_err());
        assert!(check_new_key("x", &[]).is_err());
    }
}
