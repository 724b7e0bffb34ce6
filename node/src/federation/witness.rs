//! Witnessing (spec/federation.md §4), both sides of C2SP `tlog-witness`:
//! - [`add_checkpoint`] cosigns a partner's checkpoint after checking it against the last one
//!   cosigned for that partner, persisting the new one (synced) before answering;
//! - [`gather`] submits the node's own latest checkpoint to every partner and keeps the note
//!   with every valid cosignature returned (the cosigned checkpoint).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};

use ledger::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, NoteSignature, SignedNote};
use ledger::merkle::{self, Hash};
use ledger::types::BrandId;
use ledger_store::mirror::Misbehaviour;
use ledger_store::store::Store;

use super::client::{PeerClient, PeerError, Reply};
use super::{Federation, Partner};

const WITNESS_PREFIX: &[u8] = b"witness/";
const COSIGNED_BY_PREFIX: &[u8] = b"cosigned-by/";
const COSIGNED_PREFIX: &[u8] = b"cosigned/";
const COSIGNED_LATEST: &[u8] = b"cosigned-latest";
/// Most consistency proof lines accepted.
const PROOF_LINES_MAX: usize = 64;
/// Most bytes read of a witness's answer (its cosignature lines).
const WITNESS_ANSWER_BYTES_MAX: usize = 64 * 1024;
/// How long gathering waits for one partner.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest checkpoint of this node's log as cosigned by its partners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    pub size: u64,
    /// The signed note with every cosignature gathered for it.
    pub note: String,
    /// Witness key names that cosigned.
    pub cosigners: Vec<String>,
}

/// What this node last cosigned for one partner.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WitnessState {
    size: u64,
    root: String,
    note: String,
}

fn brand_key(prefix: &[u8], brand: &BrandId) -> Vec<u8> {
    [prefix, brand.as_str().as_bytes()].concat()
}

/// The size of our log that `brand` cosigned last (0: none).
pub fn load_cosigned_by(store: &Store, brand: &BrandId) -> anyhow::Result<u64> {
    Ok(
        match store.local_get(&brand_key(COSIGNED_BY_PREFIX, brand))? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("bad cosigned-by record"))?,
            ),
            None => 0,
        },
    )
}

/// The latest cosigned checkpoint stored.
pub fn load_latest_cosigned(store: &Store) -> anyhow::Result<Option<Cosigned>> {
    Ok(match store.local_get(COSIGNED_LATEST)? {
        Some(v) => Some(serde_json::from_slice(&v)?),
        None => None,
    })
}

/// The cosigned note stored for `size`, if any.
pub fn cosigned_at(store: &Store, size: u64) -> anyhow::Result<Option<Cosigned>> {
    Ok(
        match store.local_get(&[COSIGNED_PREFIX, &size.to_be_bytes()].concat())? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        },
    )
}

/// Why the witness does not cosign a partner's checkpoint; mapped to statuses and codes in
/// [`crate::problem`]. (An `old` size that is not the one cosigned last is not an error but
/// the protocol's answer, [`WitnessAnswer::SizeMismatch`].)
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The request is not `old <n>`, proof lines, a blank line and a signed note.
    #[error("{0}")]
    InvalidBody(String),
    /// The checkpoint's origin is not the partner's log.
    #[error("{origin} is not the log of {partner}")]
    UnknownLog { origin: String, partner: BrandId },
    #[error("the checkpoint does not verify with the pinned key: {0}")]
    BadSignature(CheckpointError),
    #[error("the partnership with {0} is frozen by evidence")]
    PartnerFrozen(BrandId),
    /// The checkpoint contradicts what was cosigned or verified before (evidence is kept).
    #[error("{0}")]
    Inconsistent(Misbehaviour),
    /// A failure of this node (storage, encoding); its cause is logged, never answered.
    #[error("{0}")]
    Internal(String),
}

impl WitnessError {
    fn internal(cause: impl std::fmt::Display) -> WitnessError {
        WitnessError::Internal(cause.to_string())
    }
}

/// The witness's answer to a checkpoint it does not refuse (C2SP tlog-witness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// The cosignature line (`text/x.tlog.cosignature`).
    Cosignature(String),
    /// `old` is not the size cosigned last, which is this (`409`, `text/x.tlog.size`).
    SizeMismatch(u64),
}

fn bad_request(detail: impl Into<String>) -> WitnessError {
    WitnessError::InvalidBody(detail.into())
}

/// Parses `old <n>\n<proof lines>\n\n<note>`: the size the sender last saw cosigned, at most
/// `PROOF_LINES_MAX` base64 proof hashes, and the checkpoint note (not yet parsed).
pub fn parse_request(body: &[u8]) -> Result<(u64, Vec<Hash>, &str), WitnessError> {
    let text = std::str::from_utf8(body).map_err(|_| bad_request("body is not UTF-8"))?;
    let (first, mut rest) = text
        .split_once('\n')
        .ok_or_else(|| bad_request("no `old` line"))?;
    let old = first
        .strip_prefix("old ")
        .filter(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| bad_request("the first line must be `old <size>`"))?;
    let mut proof = Vec::new();
    loop {
        let (line, tail) = rest
            .split_once('\n')
            .ok_or_else(|| bad_request("no blank line before the checkpoint"))?;
        rest = tail;
        if line.is_empty() {
            break;
        }
        if proof.len() >= PROOF_LINES_MAX {
            return Err(bad_request("too many proof lines"));
        }
        let h: Hash = base64::engine::general_purpose::STANDARD
            .decode(line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad_request("a proof line is not a base64 32-byte hash"))?;
        proof.push(h);
    }
    Ok((old, proof, rest))
}

/// The witness's answer to `POST /v1/witness/add-checkpoint` (C2SP tlog-witness) with `body`,
/// from `partner`, whose signed peer request was verified (so pinned).
pub async fn add_checkpoint(
    fed: &Federation,
    partner: Arc<Partner>,
    body: &[u8],
) -> Result<WitnessAnswer, WitnessError> {
    let (old, proof, note) = parse_request(body)?;
    let verifier = partner.verifier.as_ref().expect("peer is pinned");
    let cp = match open_checkpoint(note, verifier) {
        Ok((cp, _)) => cp,
        Err(CheckpointError::OriginMismatch { got, .. }) => {
            return Err(WitnessError::UnknownLog {
                origin: got,
                partner: partner.brand.clone(),
            })
        }
        Err(e) => return Err(WitnessError::BadSignature(e)),
    };
    if old > cp.size {
        return Err(bad_request("old size is larger than the checkpoint"));
    }
    let _guard = fed.witness_lock.lock().await;
    if partner.frozen.load(Ordering::Acquire) {
        return Err(WitnessError::PartnerFrozen(partner.brand.clone()));
    }
    // Keyed by origin: a rotated key with a new origin starts a new history.
    let key = [WITNESS_PREFIX, cp.origin.as_bytes()].concat();
    let state: Option<WitnessState> = match fed
        .store()
        .local_get(&key)
        .map_err(WitnessError::internal)?
    {
        Some(v) => Some(serde_json::from_slice(&v).map_err(WitnessError::internal)?),
        None => None,
    };
    let (known_size, known_root, known_note) = match &state {
        Some(s) => (
            s.size,
            hex::decode(&s.root)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| WitnessError::internal("bad witness record"))?,
            s.note.clone(),
        ),
        None => (0, merkle::empty_root(), String::new()),
    };
    if old != known_size {
        return Ok(WitnessAnswer::SizeMismatch(known_size));
    }
    // The mirror's lock may be held while a chunk is stored: read it off the async workers.
    let contradiction = {
        let (p, c, n) = (partner.clone(), cp.clone(), note.to_owned());
        tokio::task::spawn_blocking(move || mirror_contradicts(&p, &c, &n))
            .await
            .map_err(WitnessError::internal)?
    };
    let misbehaviour = if let Some(m) = contradiction {
        Some(m)
    } else if cp.size == known_size && cp.root != known_root {
        Some(Misbehaviour::Fork {
            accepted_note: known_note.clone(),
            new_note: note.to_owned(),
            size: cp.size,
        })
    } else {
        merkle::verify_consistency(known_size, cp.size, &known_root, &cp.root, &proof)
            .err()
            .map(|e| Misbehaviour::Inconsistent {
                accepted_note: known_note.clone(),
                new_note: note.to_owned(),
                accepted_size: known_size,
                new_size: cp.size,
                proof: proof.iter().map(hex::encode).collect(),
                reason: e.to_string(),
            })
    };
    if let Some(m) = misbehaviour {
        if known_size > 0 || matches!(m, Misbehaviour::Fork { .. }) {
            // With a prior checkpoint, two signed notes that do not fit together: evidence.
            fed.record_evidence(&partner, &m)
                .map_err(WitnessError::internal)?;
        }
        return Err(WitnessError::Inconsistent(m));
    }
    if cp.size > known_size || state.is_none() {
        let record = WitnessState {
            size: cp.size,
            root: hex::encode(cp.root),
            note: note.to_owned(),
        };
        // Durable before the cosignature leaves this node.
        fed.store()
            .local_put(
                &key,
                &serde_json::to_vec(&record).map_err(WitnessError::internal)?,
            )
            .map_err(WitnessError::internal)?;
    }
    let text = &SignedNote::parse(note)
        .map_err(|e| bad_request(e.to_string()))?
        .text;
    let now_s = crate::sequencer::now().get() / 1000;
    let sig = fed
        .cosigner
        .cosign(text, now_s)
        .map_err(WitnessError::internal)?;
    fed.metrics.cosigned_for(partner.brand.as_str());
    Ok(WitnessAnswer::Cosignature(sig.to_line()))
}

/// A fork between a checkpoint and the entries the partner's mirror verified (when the mirror
/// holds at least that many).
fn mirror_contradicts(partner: &Partner, cp: &Checkpoint, note: &str) -> Option<Misbehaviour> {
    let mirror = partner.mirror.as_ref()?;
    let m = mirror.lock().expect("mirror lock");
    match m.root_at(cp.size) {
        Ok(Some(root)) if root != cp.root => Some(Misbehaviour::Fork {
            accepted_note: m.latest_note().unwrap_or_default(),
            new_note: note.to_owned(),
            size: cp.size,
        }),
        _ => None,
    }
}

/// After a sync round: the checkpoint this node last cosigned for `partner` must agree with
/// the mirror's verified entries.
pub async fn check_split_view(fed: &Federation, partner: &Arc<Partner>) -> Option<Misbehaviour> {
    let origin = partner.verifier.as_ref()?.name().to_owned();
    let v = fed
        .store()
        .local_get(&[WITNESS_PREFIX, origin.as_bytes()].concat())
        .ok()??;
    let state: WitnessState = serde_json::from_slice(&v).ok()?;
    let verifier = partner.verifier.as_ref()?;
    let (cp, _) = open_checkpoint(&state.note, verifier).ok()?;
    let p = partner.clone();
    tokio::task::spawn_blocking(move || mirror_contradicts(&p, &cp, &state.note))
        .await
        .ok()
        .flatten()
}

/// Starts the task that gathers cosignatures for this node's checkpoints.
pub fn spawn_gatherer(fed: Arc<Federation>) {
    tokio::spawn(async move {
        let interval = Duration::from_millis(fed.settings.witness_interval_ms);
        loop {
            tokio::time::sleep(interval).await;
            gather(&fed).await;
        }
    });
}

/// Submits the latest checkpoint to every pinned, unfrozen partner that has not cosigned it,
/// and stores the note with every valid cosignature. Returns the latest cosigned checkpoint.
pub async fn gather(fed: &Arc<Federation>) -> Option<Cosigned> {
    let _g = fed.gather_lock.lock().await;
    let own = fed.shared.checkpoint();
    let current = fed.cosigned.read().expect("cosigned lock").clone();
    if own.size == 0 {
        return current;
    }
    let partners: Vec<Arc<Partner>> = fed
        .partners()
        .into_iter()
        .filter(|p| {
            p.witness.is_some()
                && !p.frozen.load(Ordering::Acquire)
                && (p.cosigned_size.load(Ordering::Acquire) < own.size
                    || current.as_ref().is_some_and(|c| {
                        c.size == own.size
                            && !c
                                .cosigners
                                .iter()
                                .any(|n| p.witness.as_ref().is_some_and(|w| w.name() == n))
                    }))
        })
        .collect();
    if partners.is_empty() {
        return current;
    }
    let mut set = tokio::task::JoinSet::new();
    for p in partners {
        let (fed, note) = (fed.clone(), own.note.clone());
        let size = own.size;
        set.spawn(async move {
            let r = tokio::time::timeout(SUBMIT_TIMEOUT, submit(&fed, &p, &note, size)).await;
            (p, r.unwrap_or_else(|_| Err("timed out".into())))
        });
    }
    let mut note = match current.as_ref().filter(|c| c.size == own.size) {
        Some(c) => SignedNote::parse(&c.note).ok()?,
        None => SignedNote::parse(&own.note).ok()?,
    };
    let mut added = Vec::new();
    while let Some(r) = set.join_next().await {
        let Ok((p, r)) = r else { continue };
        match r {
            Ok(sig) => {
                if note.push_signature(sig).unwrap_or(false) {
                    fed.metrics.cosignature_gathered(p.brand.as_str());
                }
                added.push(p);
            }
            Err(e) => {
                tracing::debug!(partner = %p.brand, error = %e, "cosignature not gathered");
            }
        }
    }
    if added.is_empty() {
        return current;
    }
    let witness_names: Vec<String> = fed
        .partners()
        .iter()
        .filter_map(|p| p.witness.as_ref().map(|w| w.name().to_owned()))
        .collect();
    let cosigners: Vec<String> = note
        .signatures
        .iter()
        .filter(|s| witness_names.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let cosigned = Cosigned {
        size: own.size,
        note: note.to_string(),
        cosigners,
    };
    let value = serde_json::to_vec(&cosigned).ok()?;
    let mut writes = vec![
        (
            [COSIGNED_PREFIX, &own.size.to_be_bytes()].concat(),
            Some(value.clone()),
        ),
        (COSIGNED_LATEST.to_vec(), Some(value)),
    ];
    for p in &added {
        writes.push((
            brand_key(COSIGNED_BY_PREFIX, &p.brand),
            Some(own.size.to_be_bytes().to_vec()),
        ));
    }
    if let Err(e) = fed.store().local_write(&writes) {
        tracing::error!(error = %e, "cannot store the cosigned checkpoint");
        return current;
    }
    for p in &added {
        p.cosigned_size.store(own.size, Ordering::Release);
    }
    *fed.cosigned.write().expect("cosigned lock") = Some(cosigned.clone());
    Some(cosigned)
}

/// Asks `partner` to cosign our checkpoint `note` of `size`; returns its verified cosignature.
async fn submit(
    fed: &Arc<Federation>,
    partner: &Partner,
    note: &str,
    size: u64,
) -> Result<NoteSignature, String> {
    let witness = partner.witness.as_ref().ok_or("unpinned")?;
    let text = SignedNote::parse(note).map_err(|e| e.to_string())?.text;
    let mut old = partner.cosigned_size.load(Ordering::Acquire);
    for _ in 0..2 {
        if old > size {
            return Err(format!(
                "{} cosigned size {old}, larger than this log's {size}",
                partner.brand
            ));
        }
        let store = fed.store().clone();
        let proof = tokio::task::spawn_blocking(move || {
            if old == 0 || old == size {
                Ok(Vec::new())
            } else {
                merkle::consistency_proof(old, size, &store)
            }
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut body = format!("old {old}\n");
        for h in &proof {
            body.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let path = "/v1/witness/add-checkpoint";
        let Reply {
            status,
            body: answer,
        } = PeerClient::new(fed, partner)
            .post(path, body.into_bytes(), WITNESS_ANSWER_BYTES_MAX)
            .await
            .map_err(|e| match e {
                PeerError::Body(e) => e,
                e => format!("POST {path}: {e}"),
            })?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        match status {
            StatusCode::OK => {
                for line in answer.lines() {
                    let Ok(sig) = NoteSignature::parse_line(line) else {
                        continue;
                    };
                    if witness.matches(&sig) && witness.verify_cosignature(&text, &sig).is_ok() {
                        return Ok(sig);
                    }
                }
                return Err(format!("{} answered no valid cosignature", partner.brand));
            }
            StatusCode::CONFLICT => {
                old = answer
                    .trim()
                    .parse()
                    .map_err(|_| format!("POST {path}: HTTP 409 without a size"))?;
            }
            s => return Err(format!("POST {path}: HTTP {}", s.as_u16())),
        }
    }
    Err("the witness's size kept changing".into())
}
