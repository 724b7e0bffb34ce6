//! A tiny in-process node for tests: serves a log built in memory (optionally tampered)
//! and a few write and read routes with scripted failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger::checkpoint::{sign_checkpoint, Checkpoint, NoteSigner};
use ledger::entry::{Earn, Entry, EntryKind, Hold, Post, Redeem, Refund, Void};
use ledger::merkle::MemoryTree;
use ledger::receipt::Receipt;
use ledger::types::{LogTime, Points};
use serde_json::json;

use crate::types::{EarnRequest, WriteResponse, WriteStatus};

pub(crate) mod federation;

pub(crate) const ORIGIN: &str = "example.com/brand-a";

pub(crate) fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap()
}

/// Binds 127.0.0.1:0, serves `router` in the background, returns the base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

fn problem(status: StatusCode, code: &str) -> Response {
    let body = json!({
        "type": format!("urn:loyalty:problem:{code}"),
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": format!("scripted {code}"),
        "code": code,
    });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    r
}

pub(crate) fn sign_at(signer: &NoteSigner, tree: &MemoryTree, size: u64) -> String {
    let cp = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root: tree.root_at(size).unwrap(),
        extensions: vec![],
    };
    sign_checkpoint(&cp, signer).unwrap().to_string()
}

fn entry(time: u64, id: &str, kind: EntryKind) -> Entry {
    Entry {
        time: LogTime::new(time).unwrap(),
        id: id.parse().unwrap(),
        kind,
    }
}

fn pts(n: u64) -> Points {
    Points::new(n).unwrap()
}

/// Ten entries that replay cleanly: earns, a redeem, a refund, a posted and a voided hold.
pub(crate) fn sample_entries() -> Vec<Entry> {
    let m = |s: &str| s.parse().unwrap();
    let earn = |member: &str, points| {
        EntryKind::Earn(Earn {
            member: m(member),
            points: pts(points),
            qualifying: true,
        })
    };
    vec![
        entry(1000, "e-0", earn("m1", 100)),
        entry(1001, "e-1", earn("m2", 50)),
        entry(
            1002,
            "e-2",
            EntryKind::Redeem(Redeem {
                member: m("m1"),
                points: pts(30),
            }),
        ),
        entry(
            1003,
            "h-1",
            EntryKind::Hold(Hold {
                member: m("m1"),
                points: pts(20),
                expires_at: LogTime::new(10_000).unwrap(),
                payee: None,
                condition: None,
                authorisation: None,
            }),
        ),
        entry(
            1004,
            "p-1",
            EntryKind::Post(Post {
                hold: "h-1".parse().unwrap(),
                preimage: None,
            }),
        ),
        entry(1005, "e-5", earn("m3", 70)),
        entry(
            1006,
            "r-1",
            EntryKind::Refund(Refund {
                redemption: "e-2".parse().unwrap(),
                points: pts(10),
            }),
        ),
        entry(1007, "e-7", earn("m1", 5)),
        entry(
            1008,
            "h-2",
            EntryKind::Hold(Hold {
                member: m("m2"),
                points: pts(10),
                expires_at: LogTime::new(20_000).unwrap(),
                payee: None,
                condition: None,
                authorisation: None,
            }),
        ),
        entry(
            1009,
            "v-1",
            EntryKind::Void(Void {
                hold: "h-2".parse().unwrap(),
            }),
        ),
    ]
}

/// A log held in memory. `served` and `checkpoints` start honest; tests tamper with them.
pub(crate) struct FakeLog {
    pub served: Vec<String>,
    pub tree: MemoryTree,
    pub checkpoints: Vec<(u64, String)>,
    pub latest: String,
    pub consistency_requests: AtomicUsize,
    /// What `GET /v1/checkpoint/cosigned` serves; `None` answers 404.
    pub cosigned: Option<(u64, String)>,
}

impl FakeLog {
    pub fn new(signer: &NoteSigner, entries: &[Entry], checkpoint_sizes: &[u64]) -> FakeLog {
        let mut tree = MemoryTree::new();
        let served: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8(e.to_bytes()).unwrap())
            .collect();
        for s in &served {
            tree.push(s.as_bytes()).unwrap();
        }
        let checkpoints = checkpoint_sizes
            .iter()
            .map(|&n| (n, sign_at(signer, &tree, n)))
            .collect();
        let latest = sign_at(signer, &tree, tree.size());
        FakeLog {
            served,
            tree,
            checkpoints,
            latest,
            consistency_requests: AtomicUsize::new(0),
            cosigned: None,
        }
    }

    /// Serves the checkpoint of `size`, cosigned by `witnesses`, as the cosigned one.
    pub fn cosign(
        &mut self,
        signer: &NoteSigner,
        size: u64,
        witnesses: &[ledger::checkpoint::CosignatureSigner],
    ) {
        let note = federation::cosigned_note(signer, &self.tree, size, witnesses);
        self.cosigned = Some((size, note));
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/checkpoint", get(latest))
            .route("/v1/log/checkpoints", get(checkpoints))
            .route("/v1/log/entries", get(entries))
            .route("/tile/entries/{*path}", get(bundle))
            .route("/v1/log/proof/consistency", get(consistency))
            .route("/v1/checkpoint/cosigned", get(cosigned))
            .with_state(self)
    }
}

type Q = Query<HashMap<String, String>>;

fn q(query: &HashMap<String, String>, name: &str) -> Option<u64> {
    query.get(name).and_then(|v| v.parse().ok())
}

async fn latest(State(log): State<Arc<FakeLog>>) -> String {
    log.latest.clone()
}

/// Pages of at most two checkpoints, to exercise the cursor, which is (as the node's) the
/// last size of the page: the next page holds the checkpoints of larger sizes.
async fn checkpoints(State(log): State<Arc<FakeLog>>, Query(query): Q) -> Json<serde_json::Value> {
    let after = query.get("cursor").map(|c| c.parse::<u64>().unwrap());
    let start = log
        .checkpoints
        .iter()
        .position(|(size, _)| after.is_none_or(|a| *size > a))
        .unwrap_or(log.checkpoints.len());
    let end = (start + 2).min(log.checkpoints.len());
    let items: Vec<_> = log.checkpoints[start..end]
        .iter()
        .map(|(size, note)| json!({"size": size, "note": note}))
        .collect();
    let next = (end < log.checkpoints.len()).then(|| log.checkpoints[end - 1].0.to_string());
    Json(json!({"checkpoints": items, "next_cursor": next}))
}

/// C2SP entry bundles of the served entries (fewer when `served` was truncated).
async fn bundle(State(log): State<Arc<FakeLog>>, Path(path): Path<String>) -> Response {
    let Some(t) =
        ledger::tiles::parse_tile_path(&format!("entries/{}", path.trim_start_matches('/')))
    else {
        return problem(StatusCode::NOT_FOUND, "not_found");
    };
    let first = t.index * ledger::tiles::TILE_WIDTH;
    let mut body = Vec::new();
    for e in log
        .served
        .iter()
        .skip(first as usize)
        .take(t.width as usize)
    {
        ledger::tiles::push_bundle_entry(&mut body, e.as_bytes()).unwrap();
    }
    body.into_response()
}

async fn entries(State(log): State<Arc<FakeLog>>, Query(query): Q) -> Response {
    let (Some(start), Some(end)) = (q(&query, "start"), q(&query, "end")) else {
        return problem(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    let end = end.min(log.served.len() as u64);
    let items: Vec<_> = (start..end)
        .map(|i| json!({"index": i, "entry": log.served[i as usize]}))
        .collect();
    Json(json!({ "entries": items })).into_response()
}

async fn cosigned(State(log): State<Arc<FakeLog>>) -> Response {
    match &log.cosigned {
        Some((size, note)) => {
            Json(json!({"size": size, "note": note, "cosigners": [], "final": false}))
                .into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn consistency(State(log): State<Arc<FakeLog>>, Query(query): Q) -> Response {
    log.consistency_requests.fetch_add(1, Ordering::SeqCst);
    let (Some(old), Some(new)) = (q(&query, "old"), q(&query, "new")) else {
        return problem(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    match log.tree.consistency_proof(old, new) {
        Ok(p) => {
            let proof: Vec<String> = p.iter().map(hex::encode).collect();
            Json(json!({"old": old, "new": new, "proof": proof})).into_response()
        }
        Err(_) => problem(StatusCode::BAD_REQUEST, "invalid_parameter"),
    }
}

/// A node that takes writes, with scripted failures, counting the calls of each route.
pub(crate) struct WriteNode {
    pub signer: NoteSigner,
    pub log: Mutex<MemoryTree>,
    /// Answer the next this-many earns with 503 `overloaded`, `Retry-After: 0`.
    pub fail_first: AtomicUsize,
    /// Log one more point than asked (a lying node).
    pub lie: bool,
    pub earn_calls: AtomicUsize,
    pub redeem_calls: AtomicUsize,
    pub policy_calls: AtomicUsize,
}

impl WriteNode {
    pub fn new(lie: bool, fail_first: usize) -> Arc<WriteNode> {
        Arc::new(WriteNode {
            signer: signer(),
            log: Mutex::new(MemoryTree::new()),
            fail_first: AtomicUsize::new(fail_first),
            lie,
            earn_calls: AtomicUsize::new(0),
            redeem_calls: AtomicUsize::new(0),
            policy_calls: AtomicUsize::new(0),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/members/{member}/earn", post(earn))
            .route("/v1/members/{member}/redeem", post(redeem))
            .route("/v1/members/{member}/history", get(history))
            .route("/v1/policy", get(policy))
            .route(
                "/readyz",
                get(|| async { problem(StatusCode::SERVICE_UNAVAILABLE, "not_ready") }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self)
    }
}

async fn earn(
    State(node): State<Arc<WriteNode>>,
    Path(member): Path<String>,
    Json(req): Json<EarnRequest>,
) -> Response {
    node.earn_calls.fetch_add(1, Ordering::SeqCst);
    if node
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("0"));
        return r;
    }
    let mut req = req;
    if node.lie {
        req.points = pts(req.points.get() + 1);
    }
    let mut tree = node.log.lock().unwrap();
    let e = entry(
        1000 + tree.size(),
        req.id.as_str(),
        req.entry_kind(&member.parse().unwrap()),
    );
    let text = String::from_utf8(e.to_bytes()).unwrap();
    let index = tree.push(text.as_bytes()).unwrap();
    let size = tree.size();
    let receipt = Receipt {
        index,
        entry: text,
        inclusion_proof: tree
            .inclusion_proof(index, size)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint: sign_at(&node.signer, &tree, size),
    };
    Json(WriteResponse {
        status: WriteStatus::Appended,
        receipt,
    })
    .into_response()
}

async fn redeem(State(node): State<Arc<WriteNode>>) -> Response {
    node.redeem_calls.fetch_add(1, Ordering::SeqCst);
    problem(StatusCode::UNPROCESSABLE_ENTITY, "insufficient_points")
}

async fn policy(State(node): State<Arc<WriteNode>>) -> Response {
    node.policy_calls.fetch_add(1, Ordering::SeqCst);
    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal")
}

/// Five history entries of member m1, in pages of two.
async fn history(Path(member): Path<String>, Query(query): Q) -> Json<serde_json::Value> {
    let start = query.get("cursor").map_or(0, |c| c.parse::<u64>().unwrap());
    let end = (start + 2).min(5);
    let items: Vec<_> = (start..end)
        .map(|i| {
            let e = entry(
                1000 + i,
                &format!("e-{i}"),
                EntryKind::Earn(Earn {
                    member: member.parse().unwrap(),
                    points: pts(10 + i),
                    qualifying: true,
                }),
            );
            json!({"index": i, "entry": e.to_value()})
        })
        .collect();
    let next = (end < 5).then(|| end.to_string());
    Json(json!({"entries": items, "next_cursor": next}))
}
