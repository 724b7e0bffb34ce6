//! Federation (spec/federation.md): partners and their pinned keys, verified mirrors, witness
//! cosignatures, signed peer requests and equivocation evidence.
//!
//! Code map:
//! - this module: the partner registry, evidence and freezing, persisted in the node's own store;
//! - [`client`]: the one client of node-to-node requests (signed, size-limited, classified);
//! - [`peer`]: signing and verifying node-to-node requests;
//! - [`sync`]: the per-partner tasks that pull, verify and store mirrors;
//! - [`witness`]: cosigning partners' checkpoints, and gathering cosignatures for our own.
//!
//! Its HTTP routes are in [`crate::federation_routes`]; cross-brand redemption, which builds on
//! the partners and mirrors kept here, is in [`crate::redemption`].
//!
//! Invariants: nothing a partner serves is stored before it is verified against its pinned key;
//! evidence and the freeze it causes are durable before anything else happens; federation never
//! enters the sequencer, so a partner never delays local writes.

pub mod client;
pub mod peer;
pub mod sync;
pub mod witness;

// Modules that moved out (to `crate::redemption` and `crate::federation_routes`), at the
// paths other modules have used.
pub use crate::federation_routes as routes;
pub use crate::redemption::reconcile;
pub use crate::redemption::statements as settle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ledger::checkpoint::{NoteVerifier, SignatureType};
use ledger::types::BrandId;
use ledger_store::mirror::{Mirror, Misbehaviour};
use ledger_store::store::Store;

use crate::config::{Config, PartnerConfig};
use crate::metrics::Metrics;
use crate::sequencer::Shared;

// The partner checks of the configuration, at the paths other modules have used.
pub use crate::config::{check_partner, PARTNERS_MAX, RESERVED_ORIGINS};

/// Pieces of unproven evidence (spec/federation.md §5) stored per partner at most; later ones
/// are counted and logged only, so a hostile network path cannot fill the disk.
pub const UNPROVEN_EVIDENCE_PER_PARTNER_MAX: u64 = 100;
/// Directory of the mirrors inside the data directory.
pub const MIRRORS_DIR: &str = "mirrors";

const PARTNER_PREFIX: &[u8] = b"partner/";
const EVIDENCE_PREFIX: &[u8] = b"evidence/";

/// The notes and detail kept as evidence. An answer that is not a checkpoint note at all (an
/// error page, another host's answer) is kept as its SHA-256 and length only: evidence is
/// public, and must not republish what an unverified answer said.
fn evidence_content(m: &Misbehaviour) -> (Vec<String>, String) {
    if let Misbehaviour::BadSignature { note, .. } = m {
        let is_note = ledger::checkpoint::SignedNote::parse(note)
            .ok()
            .is_some_and(|n| ledger::checkpoint::Checkpoint::parse_text(&n.text).is_ok());
        if !is_note {
            use sha2::{Digest, Sha256};
            let digest = hex::encode(Sha256::digest(note.as_bytes()));
            return (
                vec![format!("sha256:{digest}")],
                format!(
                    "the answer to GET /checkpoint is not a checkpoint note ({} bytes, sha256 {digest})",
                    note.len()
                ),
            );
        }
    }
    (m.notes(), m.to_string())
}

/// The witness (cosignature, `0x04`) key a partner uses: its pinned key's name and public key.
pub fn witness_verifier(log_key: &NoteVerifier) -> NoteVerifier {
    NoteVerifier::from_public_key(
        log_key.name(),
        SignatureType::CosignatureV1,
        &log_key.public_key(),
    )
    .expect("a valid note key gives a valid cosignature key")
}

/// A partner as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerRecord {
    pub brand: BrandId,
    pub url: String,
    pub verifier_key: Option<String>,
    pub frozen: bool,
}

/// What sync last saw of a partner.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    pub partner_size: u64,
    pub last_sync_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// A partner at run time. Replaced (not mutated) when its URL or key changes; the old value is
/// retired so that its sync task stops.
pub struct Partner {
    pub brand: BrandId,
    pub url: String,
    /// The pinned key; `None` while unpinned.
    pub verifier: Option<NoteVerifier>,
    pub witness: Option<NoteVerifier>,
    pub mirror: Option<Arc<Mutex<Mirror>>>,
    /// Held for a whole sync round: a retired partner value and its successor share the mirror
    /// and must never run rounds at the same time (a stale round could misjudge a checkpoint).
    pub round_lock: Arc<tokio::sync::Mutex<()>>,
    /// The mirror's store, for reads that do not wait for sync.
    pub mirror_store: Option<Store>,
    pub frozen: AtomicBool,
    pub retired: AtomicBool,
    pub status: Mutex<SyncStatus>,
    /// The size of our log this partner cosigned last.
    pub cosigned_size: AtomicU64,
    pub evidence: AtomicU64,
    /// Pieces of unproven evidence stored against the partner.
    pub unproven: AtomicU64,
    /// A digest of the last unproven evidence, so that a repeat is not stored again.
    pub last_unproven: Mutex<Option<[u8; 32]>>,
    /// The mirror's verified size (kept here so that reads never wait for a sync in progress).
    pub verified: AtomicU64,
}

impl Partner {
    /// The verified size of the mirror.
    pub fn verified_size(&self) -> u64 {
        self.verified.load(Ordering::Acquire)
    }
}

/// One piece of evidence (spec/federation.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    pub id: u64,
    pub brand: String,
    /// `fork`, `shrink`, `inconsistent`, `bad_entries`, `invalid_entry` or `bad_signature`.
    pub kind: String,
    /// When it was detected, ms since the epoch.
    pub detected_ms: u64,
    /// Whether it proves misbehaviour on its own (two contradicting signed notes, or a signed
    /// root over an invalid entry); otherwise it records what this node was served.
    pub proven: bool,
    /// The signed notes it consists of.
    pub notes: Vec<String>,
    pub detail: String,
}

/// Federation state shared by routes and tasks.
pub struct Federation {
    pub brand: BrandId,
    pub origin: String,
    pub settings: crate::config::Federation,
    /// The memory budget of each partner's mirror (their memtables shared).
    mirror_storage: ledger_store::store::StoreConfig,
    store: Store,
    data: PathBuf,
    pub(crate) signing_key: ed25519_dalek::SigningKey,
    pub(crate) cosigner: ledger::checkpoint::CosignatureSigner,
    partners: RwLock<BTreeMap<BrandId, Arc<Partner>>>,
    pub(crate) nonces: peer::NonceCache,
    pub(crate) started_ms: u64,
    pub(crate) http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub shared: Arc<Shared>,
    /// Held for every read-modify-write of a partner record and for evidence, so that a freeze
    /// is never lost to a concurrent update.
    next_evidence: Mutex<u64>,
    /// Serialises partner changes (admin API) with each other.
    admin_lock: tokio::sync::Mutex<()>,
    pub(crate) witness_lock: tokio::sync::Mutex<()>,
    pub(crate) gather_lock: tokio::sync::Mutex<()>,
    /// Serialises the refunds this node logs as a payer: each one's amount is computed from
    /// the refunds logged before it.
    pub(crate) payer_refund_lock: tokio::sync::Mutex<()>,
    /// Serialises the creation of a redemption's secret at the payee.
    pub(crate) prepare_lock: tokio::sync::Mutex<()>,
    /// Serialises keeping a prepared quote's digest at the payer.
    pub(crate) payer_prepare_lock: tokio::sync::Mutex<()>,
    /// Serialises refunds at the payee, so it logs them in the order the payer did.
    pub(crate) refund_lock: tokio::sync::Mutex<()>,
    pub(crate) cosigned: RwLock<Option<witness::Cosigned>>,
}

/// An error of a partner change through the admin API.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("{0}")]
    Invalid(String),
    #[error("partner {0} has a pinned key and a mirror; rotating keys is an operator procedure")]
    KeyPinned(BrandId),
    #[error("no partner {0}")]
    Unknown(BrandId),
    #[error("at most {PARTNERS_MAX} partners")]
    TooMany,
    #[error("{0}")]
    Internal(String),
}

impl Federation {
    /// Loads the partners (config first, then those added through the API) and opens their
    /// mirrors. Starts nothing; see [`Federation::start`].
    pub fn open(
        config: &Config,
        data: PathBuf,
        seed: &[u8; 32],
        store: Store,
        metrics: Arc<Metrics>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Arc<Federation>> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            // A partner's answer comes from its URL or nowhere: a redirect could point the
            // signed request (and what is shown of the answer) at any other host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut next_evidence = 0;
        let mut evidence_by_brand: BTreeMap<String, u64> = BTreeMap::new();
        let mut unproven_by_brand: BTreeMap<String, u64> = BTreeMap::new();
        for (_, v) in store.local_scan(EVIDENCE_PREFIX, usize::MAX)? {
            let e: Evidence = serde_json::from_slice(&v)?;
            next_evidence = next_evidence.max(e.id + 1);
            if !e.proven {
                *unproven_by_brand.entry(e.brand.clone()).or_default() += 1;
            }
            *evidence_by_brand.entry(e.brand).or_default() += 1;
        }
        let fed = Federation {
            brand: config.brand.clone(),
            origin: config.origin.clone(),
            settings: config.federation.clone(),
            mirror_storage: config.storage.mirror(&config.storage.mirror_memtables()),
            store: store.clone(),
            data,
            signing_key: ed25519_dalek::SigningKey::from_bytes(seed),
            cosigner: ledger::checkpoint::CosignatureSigner::from_seed(&config.origin, seed)?,
            partners: RwLock::new(BTreeMap::new()),
            nonces: peer::NonceCache::default(),
            started_ms: crate::sequencer::now().get(),
            http,
            metrics,
            shared,
            next_evidence: Mutex::new(next_evidence),
            admin_lock: tokio::sync::Mutex::new(()),
            witness_lock: tokio::sync::Mutex::new(()),
            gather_lock: tokio::sync::Mutex::new(()),
            payer_refund_lock: tokio::sync::Mutex::new(()),
            prepare_lock: tokio::sync::Mutex::new(()),
            payer_prepare_lock: tokio::sync::Mutex::new(()),
            refund_lock: tokio::sync::Mutex::new(()),
            cosigned: RwLock::new(None),
        };
        // Configured partners are written to the store (the config wins for them), then every
        // stored partner is loaded.
        for p in &config.partners {
            let frozen = fed
                .stored_record(&p.brand)?
                .map(|r| r.frozen)
                .unwrap_or(false);
            let record = PartnerRecord {
                brand: p.brand.clone(),
                url: p.url.clone(),
                verifier_key: p.verifier_key.clone(),
                frozen,
            };
            fed.put_record(&record)?;
        }
        for (_, v) in store.local_scan(PARTNER_PREFIX, PARTNERS_MAX * 2)? {
            let record: PartnerRecord = serde_json::from_slice(&v)?;
            let partner = match fed.load_partner(&record, None) {
                Ok(p) => p,
                Err(e) => {
                    // One bad mirror must not keep the node from serving: the partner is listed,
                    // untrusted, with the reason.
                    tracing::error!(partner = %record.brand, error = %e, "partner disabled");
                    let p = fed.load_partner(
                        &PartnerRecord {
                            verifier_key: None,
                            ..record.clone()
                        },
                        None,
                    )?;
                    p.status.lock().expect("status lock").last_error =
                        Some(format!("disabled at start-up: {e}"));
                    p
                }
            };
            partner.evidence.store(
                evidence_by_brand
                    .get(record.brand.as_str())
                    .copied()
                    .unwrap_or(0),
                Ordering::Relaxed,
            );
            partner.unproven.store(
                unproven_by_brand
                    .get(record.brand.as_str())
                    .copied()
                    .unwrap_or(0),
                Ordering::Relaxed,
            );
            fed.partners
                .write()
                .expect("partners lock")
                .insert(record.brand.clone(), partner);
        }
        *fed.cosigned.write().expect("cosigned lock") = witness::load_latest_cosigned(&store)?;
        let fed = Arc::new(fed);
        for p in fed.partners() {
            fed.publish_metrics(&p);
        }
        Ok(fed)
    }

    /// Starts the sync task of every partner and the cosignature gatherer.
    pub fn start(self: &Arc<Self>) {
        for p in self.partners() {
            sync::spawn(self.clone(), p);
        }
        witness::spawn_gatherer(self.clone());
    }

    fn stored_record(&self, brand: &BrandId) -> anyhow::Result<Option<PartnerRecord>> {
        let key = [PARTNER_PREFIX, brand.as_str().as_bytes()].concat();
        Ok(match self.store.local_get(&key)? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    fn put_record(&self, record: &PartnerRecord) -> anyhow::Result<()> {
        let key = [PARTNER_PREFIX, record.brand.as_str().as_bytes()].concat();
        self.store.local_put(&key, &serde_json::to_vec(record)?)?;
        Ok(())
    }

    fn mirror_dir(&self, brand: &BrandId) -> PathBuf {
        self.data.join(MIRRORS_DIR).join(brand.as_str())
    }

    /// Builds a partner from its record, reusing `reuse`'s open mirror (a RocksDB directory can
    /// be open only once).
    fn load_partner(
        &self,
        record: &PartnerRecord,
        reuse: Option<&Partner>,
    ) -> anyhow::Result<Arc<Partner>> {
        let cfg = PartnerConfig {
            brand: record.brand.clone(),
            url: record.url.clone(),
            verifier_key: record.verifier_key.clone(),
        };
        let verifier = check_partner(&self.brand, &cfg, self.settings.allow_http_partners)
            .map_err(|e| anyhow::anyhow!("stored partner {}: {e}", record.brand))?;
        let round_lock = reuse
            .map(|r| r.round_lock.clone())
            .unwrap_or_else(|| Arc::new(tokio::sync::Mutex::new(())));
        let (mirror, mirror_store, cosigned, verified) = match &verifier {
            Some(v) => {
                let m = match reuse.and_then(|r| r.mirror.clone()) {
                    Some(m) => {
                        {
                            let mut g = m.lock().expect("mirror lock");
                            if g.verifier() != v {
                                g.repin(v.clone())?;
                            }
                        }
                        m
                    }
                    None => {
                        let dir = self.mirror_dir(&record.brand);
                        std::fs::create_dir_all(&dir)?;
                        let m = Mirror::open_with(&dir, v.clone(), self.mirror_storage.clone())
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "mirror of {} in {}: {e}",
                                    record.brand,
                                    dir.display()
                                )
                            })?;
                        Arc::new(Mutex::new(m))
                    }
                };
                let (store, verified) = {
                    let g = m.lock().expect("mirror lock");
                    (g.store().clone(), g.size())
                };
                let cosigned = witness::load_cosigned_by(&self.store, &record.brand)?;
                (Some(m), Some(store), cosigned, verified)
            }
            None => (None, None, 0, 0),
        };
        Ok(Arc::new(Partner {
            brand: record.brand.clone(),
            url: record.url.trim_end_matches('/').to_owned(),
            witness: verifier.as_ref().map(witness_verifier),
            verifier,
            mirror,
            round_lock,
            mirror_store,
            frozen: AtomicBool::new(record.frozen),
            retired: AtomicBool::new(false),
            status: Mutex::new(SyncStatus::default()),
            cosigned_size: AtomicU64::new(cosigned),
            evidence: AtomicU64::new(0),
            unproven: AtomicU64::new(0),
            last_unproven: Mutex::new(None),
            verified: AtomicU64::new(verified),
        }))
    }

    /// Every partner, by brand.
    pub fn partners(&self) -> Vec<Arc<Partner>> {
        self.partners
            .read()
            .expect("partners lock")
            .values()
            .cloned()
            .collect()
    }

    /// One partner.
    pub fn partner(&self, brand: &BrandId) -> Option<Arc<Partner>> {
        self.partners
            .read()
            .expect("partners lock")
            .get(brand)
            .cloned()
    }

    /// The partner whose pinned key has this origin.
    pub fn partner_by_origin(&self, origin: &str) -> Option<Arc<Partner>> {
        self.partners()
            .into_iter()
            .find(|p| p.verifier.as_ref().is_some_and(|v| v.name() == origin))
    }

    /// Adds or updates a partner (admin API). A pinned key cannot be changed once a mirror
    /// holds entries verified with it.
    pub async fn upsert_partner(
        self: &Arc<Self>,
        cfg: PartnerConfig,
    ) -> Result<Arc<Partner>, PartnerError> {
        let _guard = self.admin_lock.lock().await;
        check_partner(&self.brand, &cfg, self.settings.allow_http_partners)
            .map_err(PartnerError::Invalid)?;
        let old = self.partner(&cfg.brand);
        if old.is_none() && self.partners.read().expect("partners lock").len() >= PARTNERS_MAX {
            return Err(PartnerError::TooMany);
        }
        if let Some(old) = &old {
            let old_key = old.verifier.as_ref().map(|v| v.to_string());
            let new_key = cfg.verifier_key.as_ref().map(|k| {
                NoteVerifier::parse(k)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            });
            if old_key.is_some() && old_key != new_key && old.verified_size() > 0 {
                return Err(PartnerError::KeyPinned(cfg.brand));
            }
            if old_key == new_key && old.url == cfg.url.trim_end_matches('/') {
                return Ok(old.clone());
            }
        }
        if let Some(v) = check_partner(&self.brand, &cfg, self.settings.allow_http_partners)
            .map_err(PartnerError::Invalid)?
        {
            if v.name() == self.origin
                || self.partners().iter().any(|p| {
                    p.brand != cfg.brand
                        && p.verifier.as_ref().is_some_and(|o| o.name() == v.name())
                })
            {
                return Err(PartnerError::Invalid(format!(
                    "origin {} is already this node's or another partner's",
                    v.name()
                )));
            }
        }
        // No round may run while the partner is replaced.
        let _round = match &old {
            Some(o) => Some(o.round_lock.clone().lock_owned().await),
            None => None,
        };
        let fed = self.clone();
        let old_for_task = old.clone();
        let partner = tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Partner>> {
            let _records = fed.next_evidence.lock().expect("evidence lock");
            let frozen = fed.stored_record(&cfg.brand)?.is_some_and(|r| r.frozen);
            let rec = PartnerRecord {
                brand: cfg.brand.clone(),
                url: cfg.url.clone(),
                verifier_key: cfg.verifier_key.clone(),
                frozen,
            };
            let partner = fed.load_partner(&rec, old_for_task.as_deref())?;
            fed.put_record(&rec)?;
            if let Some(o) = &old_for_task {
                o.retired.store(true, Ordering::Release);
            }
            Ok(partner)
        })
        .await
        .map_err(|e| PartnerError::Internal(e.to_string()))?
        .map_err(|e| PartnerError::Internal(e.to_string()))?;
        if let Some(o) = &old {
            partner
                .evidence
                .store(o.evidence.load(Ordering::Relaxed), Ordering::Relaxed);
            partner
                .unproven
                .store(o.unproven.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.partners
            .write()
            .expect("partners lock")
            .insert(partner.brand.clone(), partner.clone());
        self.publish_metrics(&partner);
        sync::spawn(self.clone(), partner.clone());
        Ok(partner)
    }

    /// Lifts a partner's freeze (the evidence stays).
    pub async fn unfreeze(&self, brand: &BrandId) -> Result<Arc<Partner>, PartnerError> {
        let _guard = self.admin_lock.lock().await;
        let p = self
            .partner(brand)
            .ok_or_else(|| PartnerError::Unknown(brand.clone()))?;
        {
            let _records = self.next_evidence.lock().expect("evidence lock");
            let mut record = self
                .stored_record(brand)
                .map_err(|e| PartnerError::Internal(e.to_string()))?
                .ok_or_else(|| PartnerError::Unknown(brand.clone()))?;
            record.frozen = false;
            self.put_record(&record)
                .map_err(|e| PartnerError::Internal(e.to_string()))?;
            p.frozen.store(false, Ordering::Release);
        }
        p.status.lock().expect("status lock").last_error = None;
        self.publish_metrics(&p);
        tracing::warn!(partner = %brand, "partnership unfrozen by an operator");
        Ok(p)
    }

    /// Stores evidence against `partner` (spec/federation.md §5). Proven misbehaviour (two
    /// validly signed checkpoints that conflict, an invalid entry under a valid checkpoint)
    /// freezes the partnership, durably and in the same batch, before anything else happens.
    /// Anything else, which a proxy or a network path could have produced, is recorded (once
    /// while it repeats, at most [`UNPROVEN_EVIDENCE_PER_PARTNER_MAX`] per partner), counted
    /// and logged, and the caller backs off and retries. `Ok(None)` when nothing was stored.
    pub fn record_evidence(
        &self,
        partner: &Partner,
        m: &Misbehaviour,
    ) -> anyhow::Result<Option<Evidence>> {
        let proven = m.proven();
        let (notes, detail) = evidence_content(m);
        self.metrics
            .evidence_found(partner.brand.as_str(), m.kind());
        if !proven {
            let digest: [u8; 32] = {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                h.update(m.kind());
                for n in &notes {
                    h.update([0]);
                    h.update(n);
                }
                h.finalize().into()
            };
            let repeated = {
                let mut last = partner.last_unproven.lock().expect("unproven lock");
                let repeated = *last == Some(digest);
                *last = Some(digest);
                repeated
            };
            partner.status.lock().expect("status lock").last_error = Some(format!(
                "unproven evidence ({}); retrying with backoff",
                m.kind()
            ));
            tracing::error!(partner = %partner.brand, kind = m.kind(), detail = %detail,
                "a partner served data that does not verify (not proof of misbehaviour: not frozen; retrying)");
            if repeated
                || partner.unproven.load(Ordering::Relaxed) >= UNPROVEN_EVIDENCE_PER_PARTNER_MAX
            {
                self.publish_metrics(partner);
                return Ok(None);
            }
        }
        let mut next = self.next_evidence.lock().expect("evidence lock");
        let evidence = Evidence {
            id: *next,
            brand: partner.brand.to_string(),
            kind: m.kind().to_owned(),
            detected_ms: crate::sequencer::now().get(),
            notes,
            detail,
            proven,
        };
        let mut writes = vec![(
            [EVIDENCE_PREFIX, &evidence.id.to_be_bytes()].concat(),
            Some(serde_json::to_vec(&evidence)?),
        )];
        if proven {
            let mut record = self
                .stored_record(&partner.brand)?
                .unwrap_or(PartnerRecord {
                    brand: partner.brand.clone(),
                    url: partner.url.clone(),
                    verifier_key: partner.verifier.as_ref().map(|v| v.to_string()),
                    frozen: true,
                });
            record.frozen = true;
            writes.push((
                [PARTNER_PREFIX, partner.brand.as_str().as_bytes()].concat(),
                Some(serde_json::to_vec(&record)?),
            ));
        }
        self.store.local_write(&writes)?;
        *next += 1;
        // A partner value replaced meanwhile (admin update) is counted, and frozen, too.
        let current = self
            .partner(&partner.brand)
            .filter(|c| !std::ptr::eq(Arc::as_ptr(c), partner));
        for p in std::iter::once(partner).chain(current.as_deref()) {
            p.evidence.fetch_add(1, Ordering::Relaxed);
            if proven {
                p.frozen.store(true, Ordering::Release);
            } else {
                p.unproven.fetch_add(1, Ordering::Relaxed);
            }
        }
        if proven {
            partner.status.lock().expect("status lock").last_error =
                Some(format!("frozen: proven misbehaviour ({})", m.kind()));
            tracing::error!(partner = %partner.brand, kind = m.kind(), detail = %evidence.detail,
                "equivocation evidence stored; partnership frozen");
        }
        self.publish_metrics(partner);
        Ok(Some(evidence))
    }

    /// Evidence, oldest first, at most `limit` after the id `after` (read from there, not from
    /// the start).
    pub fn evidence(&self, after: Option<u64>, limit: usize) -> anyhow::Result<Vec<Evidence>> {
        let from = match after {
            Some(a) => [EVIDENCE_PREFIX, &a.saturating_add(1).to_be_bytes()].concat(),
            None => EVIDENCE_PREFIX.to_vec(),
        };
        self.store
            .local_scan_from(EVIDENCE_PREFIX, &from, limit)?
            .into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    /// Sets the per-partner gauges.
    pub fn publish_metrics(&self, p: &Partner) {
        let lag = {
            let s = p.status.lock().expect("status lock");
            s.partner_size.saturating_sub(p.verified_size())
        };
        self.metrics.set_partner(
            p.brand.as_str(),
            p.frozen.load(Ordering::Acquire),
            p.verified_size(),
            lag,
        );
    }

    /// The node's own store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    /// The module's invariant, as a check of its source: no file of `node::federation` submits
    /// a write to the sequencer (it reads the shared checkpoint only), so a partner never
    /// delays local writes. Cross-brand redemption, which logs its steps, is `crate::redemption`.
    /// Every file of `node::federation`, by name, and its text.
    fn files() -> [(&'static str, &'static str); 5] {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("client.rs", include_str!("client.rs")),
            ("peer.rs", include_str!("peer.rs")),
            ("sync.rs", include_str!("sync.rs")),
            ("witness.rs", include_str!("witness.rs")),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/federation");
        let on_disk = std::fs::read_dir(&dir)
            .expect("read src/federation")
            .count();
        assert_eq!(
            on_disk,
            files.len(),
            "every file of {} is checked",
            dir.display()
        );
        files
    }

    #[test]
    fn federation_never_enters_the_sequencer() {
        // Built from pieces, so that this test's own text does not match.
        let calls = [
            [".", "submit("].concat(),
            ["submit", "_together("].concat(),
            ["Sequencer", "::"].concat(),
        ];
        for (name, text) in files() {
            for call in &calls {
                assert!(
                    !text.contains(call.as_str()),
                    "federation/{name} calls {call}"
                );
            }
        }
    }

    /// Federation knows no HTTP answer: its peer checks and its witness return their own errors
    /// (`PeerRequestError`, `WitnessError`), which `crate::problem` maps.
    #[test]
    fn federation_never_builds_an_http_error() {
        let names = [["Api", "Error"].concat(), ["problem", "::"].concat()];
        for (name, text) in files() {
            for n in &names {
                assert!(!text.contains(n.as_str()), "federation/{name} names {n}");
            }
        }
    }
}
