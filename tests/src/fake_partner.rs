//! A fake partner node: an in-process axum server on a loopback port, built from the pure
//! `ledger` crate, that serves exactly what a node's sync client reads (spec/federation.md §3):
//!
//! - `GET /checkpoint`: the signed checkpoint note (C2SP tlog-checkpoint);
//! - `GET /v1/log/proof/consistency?old=&new=`: `{"old", "new", "proof": [hex]}`;
//! - `GET /tile/entries/<N>[.p/<W>]`: C2SP entry bundles (each entry as a 2-byte big-endian
//!   length and its bytes; `N` in the C2SP path encoding, as the node's own tile route);
//! - `GET /v1/log/key`: `{"origin", "verifier_key"}`;
//! - `GET /v1/log/checkpoints?cursor=`: the one checkpoint served, as an auditor lists them.
//!
//! It keeps one honest log (canonical entries with strictly increasing times, replayed through
//! the ledger's state machine, hashed into a [`MemoryTree`]) and, at run time, switches what it
//! serves between that log and one [`Behaviour`] a node must catch. A misbehaviour never changes
//! the honest log: switching back to [`Behaviour::Honest`] serves it again.
//!
//! It also signs peer requests (spec/federation.md §2) with its key, to drive a real node's
//! `POST /v1/witness/add-checkpoint`, and can sign them wrongly on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use ledger::checkpoint::{sign_checkpoint, Checkpoint, NoteSigner, NoteVerifier};
use ledger::entry::{Earn, Entry, EntryKind, Redeem};
use ledger::merkle::MemoryTree;
use ledger::state::State as LedgerState;
use ledger::types::{LogIndex, LogTime, MemberId, Points};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{http_client, now_ms, send, Answer};

pub use ledger::tiles::TILE_WIDTH;
/// Most requests the fake remembers (later ones are served but not recorded).
pub const REQUEST_LOG_MAX: usize = 10_000;
/// The member the misbehaviours' bad data is about; seed the honest log with it.
pub const TARGET_MEMBER: &str = "alice";
/// Entries a misbehaviour that extends the log adds beyond the honest size.
pub const BAD_EXTENSION_LEN: u64 = 3;

/// First line of the signed message of a peer request (spec/federation.md §2).
pub const PEER_REQUEST_V1: &str = "loyalty-peer-request/v1";
/// The sender's brand id.
pub const HEADER_PEER: &str = "Loyalty-Peer";
/// The sender's clock, ms since the Unix epoch, decimal.
pub const HEADER_PEER_TIME: &str = "Loyalty-Peer-Time";
/// 16 random bytes, 32 lowercase hex digits.
pub const HEADER_PEER_NONCE: &str = "Loyalty-Peer-Nonce";
/// Base64 (standard, padded) of the Ed25519 signature.
pub const HEADER_PEER_SIGNATURE: &str = "Loyalty-Peer-Signature";
/// The witness route (spec/federation.md §4).
pub const ADD_CHECKPOINT_PATH: &str = "/v1/witness/add-checkpoint";

/// What the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The honest log, signed with the pinned key.
    Honest,
    /// (a) A checkpoint of the honest size with another root (the last entry replaced), signed
    /// with the pinned key; entries and proofs of that other tree.
    Fork,
    /// (b) The honest log extended by [`BAD_EXTENSION_LEN`] entries, its checkpoint signed by
    /// another key with the same origin name.
    ForgedSignature,
    /// (c) The honest log extended by [`BAD_EXTENSION_LEN`] entries, correctly signed, but one
    /// of the new entries served in the bundles differs from the one the root commits to.
    RewrittenEntry,
    /// (d) A correctly signed checkpoint one entry smaller than the honest one.
    Shrink,
    /// (e) The honest log extended by a valid earn and a redeem of points the member does not
    /// have, correctly signed, entries served as committed.
    InvalidEntry,
}

impl Behaviour {
    /// Every misbehaviour.
    pub const MISBEHAVIOURS: [Behaviour; 5] = [
        Behaviour::Fork,
        Behaviour::ForgedSignature,
        Behaviour::RewrittenEntry,
        Behaviour::Shrink,
        Behaviour::InvalidEntry,
    ];

    /// The evidence `kind` a node must record for this behaviour (spec/federation.md §5).
    pub fn evidence_kind(self) -> Option<&'static str> {
        match self {
            Behaviour::Honest => None,
            Behaviour::Fork => Some("fork"),
            Behaviour::ForgedSignature => Some("bad_signature"),
            Behaviour::RewrittenEntry => Some("bad_entries"),
            Behaviour::Shrink => Some("shrink"),
            Behaviour::InvalidEntry => Some("invalid_entry"),
        }
    }
}

/// A log: canonical entries, their tree and the state they replay to.
#[derive(Clone)]
struct Log {
    entries: Vec<Vec<u8>>,
    tree: MemoryTree,
    state: LedgerState,
    last_time_ms: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            entries: Vec::new(),
            tree: MemoryTree::new(),
            state: LedgerState::new(),
            last_time_ms: 0,
        }
    }

    fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// A new entry with a time strictly after every earlier one (and not before the clock).
    fn make(&mut self, id: &str, kind: EntryKind) -> Entry {
        self.last_time_ms = now_ms().max(self.last_time_ms + 1);
        Entry {
            time: LogTime::new(self.last_time_ms).expect("a valid log time"),
            id: id.parse().expect("a valid entry id"),
            kind,
        }
    }

    /// Appends an entry the state machine must accept.
    fn push_valid(&mut self, entry: &Entry) -> u64 {
        let index = self.size();
        self.state
            .apply(LogIndex::new(index).expect("a valid index"), entry)
            .unwrap_or_else(|e| panic!("the fake's honest entry {index} is refused: {e}"));
        self.push_bytes(entry.to_bytes())
    }

    /// Appends bytes without replaying them.
    fn push_bytes(&mut self, bytes: Vec<u8>) -> u64 {
        let index = self.tree.push(&bytes).expect("the tree grows");
        self.entries.push(bytes);
        index
    }

    fn checkpoint(&self, origin: &str, size: u64) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root: self.tree.root_at(size).expect("a root of a prefix"),
            extensions: Vec::new(),
        }
    }
}

/// What the fake serves at one time.
struct View {
    note: String,
    /// The size of the served checkpoint; proofs and bundles never go beyond it.
    size: u64,
    /// The tree proofs are computed from.
    tree: MemoryTree,
    /// The entries served in bundles (they may differ from what `tree` commits to).
    entries: Vec<Vec<u8>>,
}

struct Inner {
    log: Log,
    behaviour: Behaviour,
    view: Arc<View>,
    requests: Vec<String>,
}

struct Shared {
    origin: String,
    verifier_key: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn view(&self) -> Arc<View> {
        self.inner.lock().expect("fake lock").view.clone()
    }
}

/// The fake partner; its server stops when it is dropped.
pub struct FakePartner {
    brand: String,
    url: String,
    signer: NoteSigner,
    forger: NoteSigner,
    key: SigningKey,
    shared: Arc<Shared>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePartner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn seed(label: &str, brand: &str) -> [u8; 32] {
    Sha256::digest(format!("federation-tests {label} v1 {brand}")).into()
}

impl FakePartner {
    /// Starts a fake partner for `brand` (origin `loyalty.example/<brand>`) on a loopback port,
    /// with an empty honest log. Keys are derived from the brand, so runs are reproducible.
    pub async fn start(brand: &str) -> FakePartner {
        let origin = format!("loyalty.example/{brand}");
        let key = SigningKey::from_bytes(&seed("fake partner", brand));
        let signer = NoteSigner::new(&origin, key.clone()).expect("a valid origin");
        let forger =
            NoteSigner::from_seed(&origin, &seed("forger", brand)).expect("a valid origin");
        let log = Log::new();
        let view = Arc::new(honest_view(&log, &signer));
        let shared = Arc::new(Shared {
            origin,
            verifier_key: signer.verifier_key_string(),
            inner: Mutex::new(Inner {
                log,
                behaviour: Behaviour::Honest,
                view,
                requests: Vec::new(),
            }),
        });
        let app = Router::new()
            .route("/checkpoint", get(serve_checkpoint))
            .route("/v1/log/key", get(serve_key))
            .route("/v1/log/proof/consistency", get(serve_consistency))
            .route("/v1/log/checkpoints", get(serve_checkpoints))
            .route("/tile/{*path}", get(serve_tile))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePartner {
            brand: brand.to_owned(),
            url,
            signer,
            forger,
            key,
            shared,
            http: http_client(),
            server,
        }
    }

    /// The brand id.
    pub fn brand(&self) -> &str {
        &self.brand
    }

    /// The log origin (the name of its key).
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The C2SP verifier key to pin.
    pub fn verifier_key(&self) -> String {
        self.shared.verifier_key.clone()
    }

    /// The pinned log key as a verifier.
    pub fn log_verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The key that signs checkpoints and peer requests.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Appends an honest earn and returns its index.
    pub fn append_earn(&self, member: &str, points: u64) -> u64 {
        self.append(EntryKind::Earn(Earn {
            member: member.parse().expect("a valid member id"),
            points: Points::new(points).expect("valid points"),
            qualifying: true,
        }))
    }

    /// Appends an honest entry (the state machine must accept it) and returns its index.
    pub fn append(&self, kind: EntryKind) -> u64 {
        let mut inner = self.shared.inner.lock().expect("fake lock");
        let index = inner.log.size();
        let entry = inner.log.make(&format!("fake-{index}"), kind);
        inner.log.push_valid(&entry);
        let view = self.view_for(&inner.log, inner.behaviour);
        inner.view = Arc::new(view);
        index
    }

    /// The size of the honest log.
    pub fn size(&self) -> u64 {
        self.shared.inner.lock().expect("fake lock").log.size()
    }

    /// A member's balance in the honest log (0 for an unknown member).
    pub fn balance(&self, member: &str) -> u64 {
        let m: MemberId = member.parse().expect("a valid member id");
        self.shared
            .inner
            .lock()
            .expect("fake lock")
            .log
            .state
            .member(&m)
            .expect("an in-memory state reads")
            .map_or(0, |s| s.balance)
    }

    /// The honest log's entries (canonical bytes).
    pub fn entries(&self) -> Vec<Vec<u8>> {
        self.shared
            .inner
            .lock()
            .expect("fake lock")
            .log
            .entries
            .clone()
    }

    /// The honest log's latest signed checkpoint note.
    pub fn honest_note(&self) -> String {
        let inner = self.shared.inner.lock().expect("fake lock");
        honest_view(&inner.log, &self.signer).note
    }

    /// The note served now at `/checkpoint`.
    pub fn served_note(&self) -> String {
        self.shared.view().note.clone()
    }

    /// What the fake serves now.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.inner.lock().expect("fake lock").behaviour
    }

    /// Switches what the fake serves; takes effect for every later request at once.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let mut inner = self.shared.inner.lock().expect("fake lock");
        let view = self.view_for(&inner.log, behaviour);
        inner.behaviour = behaviour;
        inner.view = Arc::new(view);
    }

    /// Every request served so far, as `METHOD path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .inner
            .lock()
            .expect("fake lock")
            .requests
            .clone()
    }

    /// How many requests so far started with `prefix` (e.g. `"GET /checkpoint"`).
    pub fn request_count(&self, prefix: &str) -> usize {
        self.shared
            .inner
            .lock()
            .expect("fake lock")
            .requests
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }

    fn view_for(&self, log: &Log, behaviour: Behaviour) -> View {
        let origin = self.shared.origin.as_str();
        let n = log.size();
        let sign = |log: &Log, size: u64, signer: &NoteSigner| {
            sign_checkpoint(&log.checkpoint(origin, size), signer)
                .expect("sign a checkpoint")
                .to_string()
        };
        match behaviour {
            Behaviour::Honest => honest_view(log, &self.signer),
            Behaviour::Fork => {
                assert!(n >= 1, "a fork needs a non-empty honest log");
                let last = Entry::from_bytes(&log.entries[n as usize - 1]).expect("own entry");
                let mut alt = Log::new();
                for e in &log.entries[..n as usize - 1] {
                    alt.push_bytes(e.clone());
                }
                let other = Entry {
                    time: last.time,
                    id: format!("fork-{}", n - 1).parse().expect("a valid id"),
                    kind: earn(TARGET_MEMBER, 777_777),
                };
                alt.push_bytes(other.to_bytes());
                assert_ne!(
                    alt.tree.root(),
                    log.tree.root(),
                    "the fork has another root"
                );
                View {
                    note: sign(&alt, n, &self.signer),
                    size: n,
                    tree: alt.tree,
                    entries: alt.entries,
                }
            }
            Behaviour::ForgedSignature => {
                let bad = extended(log);
                View {
                    note: sign(&bad, bad.size(), &self.forger),
                    size: bad.size(),
                    tree: bad.tree,
                    entries: bad.entries,
                }
            }
            Behaviour::RewrittenEntry => {
                let bad = extended(log);
                let mut served = bad.entries.clone();
                let i = n as usize + 1;
                let mut e = Entry::from_bytes(&served[i]).expect("own entry");
                e.kind = earn(TARGET_MEMBER, 999_999);
                served[i] = e.to_bytes();
                assert_ne!(served[i], bad.entries[i]);
                View {
                    note: sign(&bad, bad.size(), &self.signer),
                    size: bad.size(),
                    tree: bad.tree,
                    entries: served,
                }
            }
            Behaviour::Shrink => {
                assert!(n >= 1, "shrinking needs a non-empty honest log");
                View {
                    note: sign(log, n - 1, &self.signer),
                    size: n - 1,
                    tree: log.tree.clone(),
                    entries: log.entries[..n as usize - 1].to_vec(),
                }
            }
            Behaviour::InvalidEntry => {
                let mut bad = log.clone();
                let ok = bad.make(&format!("bad-{n}"), earn(TARGET_MEMBER, 5));
                bad.push_valid(&ok);
                let member: MemberId = TARGET_MEMBER.parse().expect("a valid member id");
                let held = bad
                    .state
                    .member(&member)
                    .expect("an in-memory state reads")
                    .map_or(0, |m| m.balance);
                let redeem = bad.make(
                    &format!("bad-{}", n + 1),
                    EntryKind::Redeem(Redeem {
                        member,
                        points: Points::new(held + 1_000_000).expect("valid points"),
                    }),
                );
                let refused = bad
                    .state
                    .clone()
                    .apply(LogIndex::new(n + 1).expect("a valid index"), &redeem);
                assert!(
                    refused.is_err(),
                    "the fake's invalid entry must be refused by the state machine"
                );
                bad.push_bytes(redeem.to_bytes());
                View {
                    note: sign(&bad, bad.size(), &self.signer),
                    size: bad.size(),
                    tree: bad.tree,
                    entries: bad.entries,
                }
            }
        }
    }

    /// Signs a peer request from this partner to `receiver` now, with a fresh nonce.
    pub fn peer_headers(
        &self,
        receiver: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> PeerHeaders {
        PeerHeaders::sign(
            &self.key,
            &self.brand,
            receiver,
            method,
            path_and_query,
            body,
            now_ms(),
            random_nonce(),
        )
    }

    /// A C2SP `add-checkpoint` body for the honest log's latest checkpoint: `old <old>`, the
    /// consistency proof from `old` (base64, one hash a line), a blank line, the signed note.
    pub fn add_checkpoint_body(&self, old: u64) -> String {
        let inner = self.shared.inner.lock().expect("fake lock");
        let n = inner.log.size();
        let proof = if old == 0 || old >= n {
            Vec::new()
        } else {
            inner
                .log
                .tree
                .consistency_proof(old, n)
                .expect("a consistency proof")
        };
        let note = honest_view(&inner.log, &self.signer).note;
        add_checkpoint_body(old, &proof, &note)
    }

    /// `POST <base_url><path>` with a text body and, when given, the peer headers.
    pub async fn post_peer(
        &self,
        base_url: &str,
        path: &str,
        body: &str,
        headers: Option<&PeerHeaders>,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!("{base_url}{path}"))
            .header(header::CONTENT_TYPE.as_str(), "text/plain; charset=utf-8")
            .body(body.to_owned());
        if let Some(h) = headers {
            req = h.apply(req);
        }
        send(req).await.expect("POST to the node")
    }

    /// Submits the honest log's latest checkpoint to a node's witness route as a correctly
    /// signed peer request, with the proof from `old`.
    pub async fn add_checkpoint(&self, node_url: &str, node_brand: &str, old: u64) -> Answer {
        let body = self.add_checkpoint_body(old);
        let h = self.peer_headers(node_brand, "POST", ADD_CHECKPOINT_PATH, body.as_bytes());
        self.post_peer(node_url, ADD_CHECKPOINT_PATH, &body, Some(&h))
            .await
    }
}

fn earn(member: &str, points: u64) -> EntryKind {
    EntryKind::Earn(Earn {
        member: member.parse().expect("a valid member id"),
        points: Points::new(points).expect("valid points"),
        qualifying: true,
    })
}

/// The honest log plus [`BAD_EXTENSION_LEN`] valid earns for [`TARGET_MEMBER`].
fn extended(log: &Log) -> Log {
    let mut bad = log.clone();
    for k in 0..BAD_EXTENSION_LEN {
        let index = bad.size();
        let e = bad.make(&format!("bad-{index}"), earn(TARGET_MEMBER, 100 + k));
        bad.push_valid(&e);
    }
    bad
}

fn honest_view(log: &Log, signer: &NoteSigner) -> View {
    let n = log.size();
    View {
        note: sign_checkpoint(&log.checkpoint(signer.name(), n), signer)
            .expect("sign a checkpoint")
            .to_string(),
        size: n,
        tree: log.tree.clone(),
        entries: log.entries.clone(),
    }
}

/// A C2SP tlog-witness `add-checkpoint` body.
pub fn add_checkpoint_body(old: u64, proof: &[[u8; 32]], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&BASE64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

// ---------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------

async fn record(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    {
        let mut inner = s.inner.lock().expect("fake lock");
        if inner.requests.len() < REQUEST_LOG_MAX {
            inner
                .requests
                .push(format!("{} {}", req.method(), req.uri()));
        }
    }
    next.run(req).await
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({
            "type": format!("urn:loyalty:problem:{code}"),
            "title": code,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        })
        .to_string(),
    )
        .into_response()
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "the fake partner does not serve this",
    )
}

async fn serve_checkpoint(State(s): State<Arc<Shared>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        s.view().note.clone(),
    )
        .into_response()
}

/// The checkpoint list an auditor reads (`GET /v1/log/checkpoints`): the fake lists only the
/// checkpoint it serves, when its size is above `cursor` (the node's cursor is a size).
async fn serve_checkpoints(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let view = s.view();
    let after = q.get("cursor").and_then(|c| c.parse::<u64>().ok());
    let items = if after.is_none_or(|a| view.size > a) {
        vec![json!({"size": view.size, "note": view.note})]
    } else {
        Vec::new()
    };
    Json(json!({"checkpoints": items, "next_cursor": null}))
}

async fn serve_key(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"origin": s.origin, "verifier_key": s.verifier_key}))
}

async fn serve_consistency(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let (Some(old), Some(new)) = (get("old"), get("new")) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "need ?old=&new=",
        );
    };
    let view = s.view();
    if old > new || new > view.size {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "need old <= new <= the checkpoint's size",
        );
    }
    match view.tree.consistency_proof(old, new) {
        Ok(proof) => Json(json!({
            "old": old,
            "new": new,
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, "invalid_parameter", &e.to_string()),
    }
}

async fn serve_tile(State(s): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    let Some((index, width)) = parse_entry_bundle_path(path.trim_start_matches('/')) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "not an entry bundle path",
        );
    };
    let view = s.view();
    let first = index.saturating_mul(TILE_WIDTH);
    let end = first.saturating_add(width);
    if end > view.size || end > view.entries.len() as u64 {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "the tree does not have this tile yet",
        );
    }
    let mut body = Vec::new();
    for bytes in &view.entries[first as usize..end as usize] {
        ledger::tiles::push_bundle_entry(&mut body, bytes).expect("an entry fits a bundle");
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

/// Parses `entries/<N>[.p/<W>]` (the part after `/tile/`) in the C2SP tlog-tiles encoding
/// ([`ledger::tiles::parse_tile_path`], as the node does). Returns `(N, W)`, `W` = 256 for a
/// full bundle.
pub fn parse_entry_bundle_path(path: &str) -> Option<(u64, u64)> {
    ledger::tiles::parse_tile_path(path)
        .filter(|t| t.level.is_none())
        .map(|t| (t.index, t.width))
}

// ---------------------------------------------------------------------------------
// Signed peer requests (spec/federation.md §2)
// ---------------------------------------------------------------------------------

/// The signed message of a peer request, exactly as spec/federation.md §2 gives it: eight
/// lines, each ending in `\n`.
pub fn peer_request_message(
    sender: &str,
    receiver: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    time_ms: u64,
    nonce_hex: &str,
) -> String {
    format!(
        "{PEER_REQUEST_V1}\n{sender}\n{receiver}\n{method}\n{path_and_query}\n{}\n{time_ms}\n{nonce_hex}\n",
        hex::encode(Sha256::digest(body))
    )
}

/// 16 random bytes for a nonce.
pub fn random_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    OsRng.fill_bytes(&mut n);
    n
}

/// The four headers of a signed peer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHeaders {
    pub peer: String,
    pub time: String,
    pub nonce: String,
    pub signature: String,
}

impl PeerHeaders {
    /// Signs a request from `sender` to `receiver` with `key`.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        key: &SigningKey,
        sender: &str,
        receiver: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        time_ms: u64,
        nonce: [u8; 16],
    ) -> PeerHeaders {
        let nonce = hex::encode(nonce);
        let msg = peer_request_message(
            sender,
            receiver,
            method,
            path_and_query,
            body,
            time_ms,
            &nonce,
        );
        PeerHeaders {
            peer: sender.to_owned(),
            time: time_ms.to_string(),
            nonce,
            signature: BASE64.encode(key.sign(msg.as_bytes()).to_bytes()),
        }
    }

    /// Adds the four headers to a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(HEADER_PEER, &self.peer)
            .header(HEADER_PEER_TIME, &self.time)
            .header(HEADER_PEER_NONCE, &self.nonce)
            .header(HEADER_PEER_SIGNATURE, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;
    use ledger::checkpoint::open_checkpoint;
    use ledger::merkle::{leaf_hash, verify_consistency};

    #[test]
    fn bundle_paths_follow_the_c2sp_encoding() {
        assert_eq!(parse_entry_bundle_path("entries/000"), Some((0, 256)));
        assert_eq!(parse_entry_bundle_path("entries/000.p/17"), Some((0, 17)));
        assert_eq!(
            parse_entry_bundle_path("entries/x001/x234/067"),
            Some((1_234_067, 256))
        );
        for n in [0u64, 5, 999, 1000, 1_234_067] {
            let p = format!("entries/{}.p/3", sdk::tile_index_path(n));
            assert_eq!(parse_entry_bundle_path(&p), Some((n, 3)));
        }
        for bad in [
            "entries/5",
            "entries/x001",
            "entries/001/002",
            "entries/000.p/256",
            "entries/000.p/0",
            "entries/000.p/01",
            "0/000",
            "entries/",
        ] {
            assert_eq!(parse_entry_bundle_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn peer_message_is_the_spec_text() {
        let body = b"old 0\n\nnote\n";
        let msg = peer_request_message(
            "brand-b",
            "brand-a",
            "POST",
            "/v1/witness/add-checkpoint",
            body,
            1_700_000_000_000,
            "00112233445566778899aabbccddeeff",
        );
        let expected = format!(
            "loyalty-peer-request/v1\nbrand-b\nbrand-a\nPOST\n/v1/witness/add-checkpoint\n{}\n1700000000000\n00112233445566778899aabbccddeeff\n",
            hex::encode(Sha256::digest(body))
        );
        assert_eq!(msg, expected);
        let empty = peer_request_message("a", "b", "GET", "/x?y=1", b"", 1, "00");
        assert!(
            empty.contains("\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n")
        );

        let key = SigningKey::from_bytes(&[7; 32]);
        let h = PeerHeaders::sign(
            &key,
            "brand-b",
            "brand-a",
            "POST",
            "/v1/witness/add-checkpoint",
            body,
            1_700_000_000_000,
            [0x11; 16],
        );
        assert_eq!(h.nonce, "11111111111111111111111111111111");
        assert_eq!(h.time, "1700000000000");
        let sig =
            ed25519_dalek::Signature::from_slice(&BASE64.decode(&h.signature).unwrap()).unwrap();
        let msg = peer_request_message(
            "brand-b",
            "brand-a",
            "POST",
            "/v1/witness/add-checkpoint",
            body,
            1_700_000_000_000,
            &h.nonce,
        );
        key.verifying_key().verify(msg.as_bytes(), &sig).unwrap();
    }

    fn view_root(fake: &FakePartner, size: u64) -> [u8; 32] {
        let mut t = MemoryTree::new();
        for e in &fake.entries()[..size as usize] {
            t.push(e).unwrap();
        }
        t.root().unwrap()
    }

    #[tokio::test]
    async fn every_view_is_what_its_behaviour_says() {
        let fake = FakePartner::start("fake").await;
        for i in 0..10 {
            fake.append_earn(if i % 2 == 0 { "alice" } else { "bob" }, 10 + i);
        }
        let n = fake.size();
        let key = fake.log_verifier();
        let (honest, _) = open_checkpoint(&fake.served_note(), &key).unwrap();
        assert_eq!(honest.size, n);

        fake.set_behaviour(Behaviour::Fork);
        let (cp, _) = open_checkpoint(&fake.served_note(), &key).unwrap();
        assert_eq!(cp.size, n);
        assert_ne!(cp.root, honest.root);

        fake.set_behaviour(Behaviour::ForgedSignature);
        assert!(open_checkpoint(&fake.served_note(), &key).is_err());

        fake.set_behaviour(Behaviour::RewrittenEntry);
        let (cp, _) = open_checkpoint(&fake.served_note(), &key).unwrap();
        assert_eq!(cp.size, n + BAD_EXTENSION_LEN);
        let view = fake.shared.view();
        let proof = view.tree.consistency_proof(n, cp.size).unwrap();
        verify_consistency(n, cp.size, &honest.root, &cp.root, &proof).unwrap();
        let mut served = MemoryTree::new();
        for e in &view.entries {
            served.push_leaf_hash(leaf_hash(e)).unwrap();
        }
        assert_ne!(served.root().unwrap(), cp.root, "served entries differ");

        fake.set_behaviour(Behaviour::Shrink);
        let (cp, _) = open_checkpoint(&fake.served_note(), &key).unwrap();
        assert_eq!(cp.size, n - 1);

        fake.set_behaviour(Behaviour::InvalidEntry);
        let (cp, _) = open_checkpoint(&fake.served_note(), &key).unwrap();
        assert_eq!(cp.size, n + 2);

        fake.set_behaviour(Behaviour::Honest);
        assert_eq!(fake.served_note(), fake.honest_note());
        assert_eq!(fake.size(), n, "misbehaviours never change the honest log");
        assert_eq!(fake.balance("alice"), 10 + 12 + 14 + 16 + 18);

        // The server answers what the node's sync client asks for.
        let http = http_client();
        let a = send(http.get(format!("{}/checkpoint", fake.url())))
            .await
            .unwrap();
        assert_eq!(a.text, fake.honest_note());
        let a = send(http.get(format!("{}/tile/entries/000.p/{n}", fake.url())))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        let a = send(http.get(format!("{}/tile/entries/000.p/{}", fake.url(), n + 1)))
            .await
            .unwrap();
        assert_eq!(a.status, 404);
        let a = send(http.get(format!(
            "{}/v1/log/proof/consistency?old=3&new={n}",
            fake.url()
        )))
        .await
        .unwrap();
        let v = a.json().unwrap();
        let proof: Vec<[u8; 32]> = v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let (cp, _) = open_checkpoint(&fake.honest_note(), &key).unwrap();
        let old_root = view_root(&fake, 3);
        verify_consistency(3, n, &old_root, &cp.root, &proof).unwrap();
        let a = send(http.get(format!("{}/v1/log/key", fake.url())))
            .await
            .unwrap();
        assert_eq!(a.json().unwrap()["verifier_key"], fake.verifier_key());
        assert_eq!(fake.request_count("GET /checkpoint"), 1);
    }
}
