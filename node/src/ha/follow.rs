//! The standby phase of a node under `[ha]`: the store opened as a verified mirror of the
//! brand's own log ([`StandbyLog`]), the read routes, log routes and tiles served from it, the
//! primary's batches received (`POST /v1/ha/replicate`), a pull loop catching up from the
//! primary's public log, and the watch that takes the leadership over when nobody leads and
//! this node may (`eligible`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use ledger::checkpoint::NoteSigner;
use ledger::merkle::Hash;

use loyalty_wire::ErrorCode;

use super::lock::{Head, LeaderInfo, Lease, LockBackend, Locked};
use super::node::WATCH_INTERVAL;
use super::standby::{ReceiveError, StandbyLog};
use super::{ReplicateBody, REPLICATE_BODY_BYTES_MAX, REPLICATE_PATH, STATUS_PATH};
use crate::api::App;
use crate::config::{Config, Ha, DB_DIR};
use crate::problem::ApiError;

/// How often a standby pulls the primary's published checkpoint.
pub const PULL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest checkpoint note read from the primary.
const NOTE_BYTES_MAX: usize = 64 * 1024;
/// Longest log read answer from the primary.
const READ_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What the standby phase shares between its routes and tasks.
struct Following {
    standby: Arc<Mutex<StandbyLog>>,
    /// The restore guard's refusal, if one is in force (node/src/ha/refusal.rs).
    refused: Arc<super::refusal::Refused>,
    shared: Arc<crate::sequencer::Shared>,
    ha: Ha,
    public_url: String,
    status: Mutex<FollowStatus>,
}

/// What a standby shows at `GET /v1/ha/status`.
#[derive(Debug, Clone, Default, Serialize)]
struct FollowStatus {
    leader: Option<String>,
    leader_url: Option<String>,
    last_error: Option<String>,
    /// Why this node may not take over now, if it may not.
    not_eligible: Option<String>,
}

impl Following {
    fn follow_url(&self) -> String {
        let s = self.status.lock().expect("status lock");
        s.leader_url
            .clone()
            .or_else(|| self.ha.standby_of.clone())
            .unwrap_or_else(|| self.ha.peer_url.clone())
            .trim_end_matches('/')
            .to_owned()
    }

    async fn with_log<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut StandbyLog) -> T + Send + 'static,
    ) -> Result<T, String> {
        let standby = self.standby.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = standby.lock().expect("standby lock");
            f(&mut s)
        })
        .await
        .map_err(|e| e.to_string())
    }
}

fn open_standby(data: &std::path::Path, config: &Config) -> Result<StandbyLog> {
    let seed = crate::cli::load_seed(data)?;
    let verifier = NoteSigner::from_seed(&config.origin, &seed)?.verifier();
    // The store may still be closing after a role change in this process.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match StandbyLog::open(&data.join(DB_DIR), verifier.clone(), config.storage.log()) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).context("open the store as a standby"),
        }
    }
}

/// The standby phase; returns the leadership when this node took over, `None` on a
/// shutdown signal.
pub async fn follow(
    data: &std::path::Path,
    config: &Config,
    ha: &Ha,
    backend: Arc<dyn LockBackend>,
) -> Result<Option<(Lease, Locked)>> {
    let standby = {
        let (data, config) = (data.to_owned(), config.clone());
        tokio::task::spawn_blocking(move || open_standby(&data, &config)).await??
    };
    let shared = standby.shared();
    let store = standby.store();
    tracing::info!(size = standby.size(), "following as a standby");
    let seed = crate::cli::load_seed(data)?;
    let verifier_key = NoteSigner::from_seed(&config.origin, &seed)?.verifier_key_string();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    metrics.log_size.set(standby.size() as i64);
    let federation = crate::federation::Federation::open(
        config,
        data.to_owned(),
        &seed,
        store.clone(),
        metrics.clone(),
        shared.clone(),
    )?;
    let app = Arc::new(App {
        config: config.clone(),
        store: store.clone(),
        sequencer: crate::sequencer::Sequencer::refusing(shared.clone()),
        shared,
        keys: crate::keys::Keys::load(store)?,
        metrics: metrics.clone(),
        verifier_key,
        federation,
        admission: crate::guard::Admission::new(&config.limits),
        clock: crate::clock::ClockGuard::new(config.limits.clock_jump_ms_max, metrics.clone()),
    });
    let ctx = Arc::new(Following {
        standby: Arc::new(Mutex::new(standby)),
        refused: super::refusal::Refused::load(app.store.clone())?,
        shared: app.shared.clone(),
        ha: ha.clone(),
        public_url: config.public_url.clone(),
        status: Mutex::new(FollowStatus::default()),
    });
    let reload = Arc::downgrade(&app);
    let replica = Arc::new(
        super::local::LocalReplica::open(
            app.store.clone(),
            super::local::body_key(&seed).verifying_key(),
        )?
        .on_keys_changed(move || {
            // Keys created or revoked on the primary hold on this standby's reads too.
            if let Some(app) = reload.upgrade() {
                if let Err(e) = app.keys.reload() {
                    tracing::warn!(error = %e, "reloading the API keys failed");
                }
            }
        }),
    );
    let router = standby_router(app.clone(), ctx.clone(), replica);
    let listener = bind(config.listen).await?;
    let (took_tx, mut took_rx) = tokio::sync::mpsc::channel::<(Lease, Locked)>(1);
    let pull = tokio::spawn(pull_loop(ctx.clone()));
    let watch = tokio::spawn(watch_loop(ctx.clone(), backend, took_tx));
    let took = Arc::new(Mutex::new(None));
    let took_in = took.clone();
    crate::listener::serve(listener, router, &config.limits, metrics, async move {
        tokio::select! {
            _ = crate::server::shutdown_signal() => {},
            t = took_rx.recv() => { *took_in.lock().expect("took lock") = t; },
        }
    })
    .await;
    pull.abort();
    watch.abort();
    let _ = pull.await;
    let _ = watch.await;
    drop(app);
    drop(ctx);
    let t = took.lock().expect("took lock").take();
    Ok(t)
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("listen on {addr}")),
        }
    }
}

fn standby_router(
    app: Arc<App>,
    ctx: Arc<Following>,
    replica: Arc<super::local::LocalReplica>,
) -> Router {
    use crate::{log_routes, reads};
    let reads = Router::new()
        .route("/v1/holds/{hold}", get(reads::hold))
        .route("/v1/members/{member}", get(reads::member))
        .route("/v1/members/{member}/history", get(reads::history))
        .route("/v1/members/{member}/lots", get(reads::lots))
        .route("/v1/policy", get(reads::policy))
        .route("/v1/log/key", get(log_routes::key))
        .route("/v1/log/time", get(log_routes::time))
        .route("/v1/log/entries", get(log_routes::entries))
        .route("/v1/log/entries/{index}/receipt", get(log_routes::receipt))
        .route("/v1/log/proof/inclusion", get(log_routes::inclusion))
        .route("/v1/log/proof/consistency", get(log_routes::consistency))
        .route("/v1/log/checkpoints", get(log_routes::checkpoints))
        .route("/checkpoint", get(log_routes::checkpoint))
        .route("/tile/{*path}", get(log_routes::tile))
        .with_state(app.clone());
    let body_max = app.config.limits.body_bytes_max;
    let own = Router::new()
        // Only this route takes a whole batch, one at a time (the primary sends them one after
        // the other): at most one body of up to REPLICATE_BODY_BYTES_MAX is held.
        .route(
            REPLICATE_PATH,
            post(replicate)
                .layer::<_, std::convert::Infallible>(axum::extract::DefaultBodyLimit::max(
                    REPLICATE_BODY_BYTES_MAX,
                ))
                .layer::<_, std::convert::Infallible>(tower::limit::ConcurrencyLimitLayer::new(1)),
        )
        .route(STATUS_PATH, get(standby_status))
        .with_state(ctx.clone())
        // The leader's node-local records, one body at a time.
        .route(
            super::local::LOCAL_PATH,
            post(super::local::receive)
                .layer::<_, std::convert::Infallible>(axum::extract::DefaultBodyLimit::max(
                    super::local::LOCAL_BODY_BYTES_MAX,
                ))
                .layer::<_, std::convert::Infallible>(tower::limit::ConcurrencyLimitLayer::new(1))
                .get(super::local::position),
        )
        .with_state(replica)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "standby\n" }));
    let gate = Arc::new(super::refusal::Gate {
        refused: ctx.refused.clone(),
        size: {
            let shared = ctx.shared.clone();
            Box::new(move || shared.checkpoint().size)
        },
    });
    reads
        .merge(own)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            super::refusal::gate,
        ))
        .fallback(move || {
            let url = ctx.follow_url();
            async move {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::NotReady,
                    format!("this node is a standby; writes go to the primary ({url})"),
                )
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_max))
}

async fn replicate(State(ctx): State<Arc<Following>>, body: axum::body::Bytes) -> Response {
    let body = match ReplicateBody::decode(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                e.to_string(),
            )
            .into_response()
        }
    };
    let r = ctx
        .with_log(move |s| {
            let r = s.receive(&body);
            (r, s.position())
        })
        .await;
    match r {
        Ok((Ok(answer), _)) => {
            // The batch the answer proved committed is applied now, off the primary's commit
            // path (the next batch or read waits for it on the log's lock).
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Ok(Err(e)) = ctx.with_log(|s| s.apply_proven()).await {
                    tracing::warn!(error = %e, "applying a committed batch failed; retried with the next");
                }
            });
            Json(answer).into_response()
        }
        Ok((Err(ReceiveError::Position { .. }), position)) => {
            (StatusCode::CONFLICT, Json(position)).into_response()
        }
        Ok((Err(ReceiveError::Invalid(e)), _)) => {
            tracing::warn!(error = %e, "a replicated batch was refused");
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidBody, e).into_response()
        }
        Ok((Err(e), _)) => ApiError::internal(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn standby_status(State(ctx): State<Arc<Following>>) -> Response {
    let position = ctx.with_log(|s| s.position()).await;
    let status = ctx.status.lock().expect("status lock").clone();
    match position {
        Ok(p) => Json(serde_json::json!({
            "role": "standby",
            "name": ctx.ha.name,
            "size": p.size,
            "staged_end": p.staged_end,
            "leader": status.leader,
            "leader_url": status.leader_url,
            "last_error": status.last_error,
            "not_eligible": status.not_eligible,
        }))
        .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn get_limited(http: &reqwest::Client, url: &str, max: usize) -> Result<Vec<u8>, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::federation::sync::describe(&e)))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", r.status().as_u16()));
    }
    crate::federation::sync::read_limited(r, max).await
}

async fn consistency_proof(
    http: &reqwest::Client,
    url: &str,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, String> {
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let body = get_limited(
        http,
        &format!("{url}/v1/log/proof/consistency?old={old}&new={new}"),
        READ_BYTES_MAX,
    )
    .await?;
    // A proof hash that is not 32 bytes of hex does not decode.
    let p: loyalty_wire::ConsistencyProof =
        serde_json::from_slice(&body).map_err(|e| format!("consistency proof: {e}"))?;
    Ok(p.proof.into_iter().map(|h| h.0).collect())
}

/// One catch-up round from the primary's public log routes.
async fn pull_once(ctx: &Arc<Following>, http: &reqwest::Client, url: &str) -> Result<(), String> {
    let note = get_limited(http, &format!("{url}/checkpoint"), NOTE_BYTES_MAX).await?;
    let note = String::from_utf8(note).map_err(|_| "the checkpoint is not UTF-8".to_owned())?;
    let n = note.clone();
    let judged = ctx
        .with_log(move |s| s.judge(&n))
        .await?
        .map_err(|e| format!("the primary's checkpoint: {e}"))?;
    let Some((cp, accepted)) = judged else {
        return Ok(());
    };
    let proof = consistency_proof(http, url, accepted, cp.size).await?;
    let (c, n) = (cp.clone(), note.clone());
    ctx.with_log(move |s| s.check_consistency(&c, &n, &proof))
        .await?
        .map_err(|e| format!("the primary's checkpoint: {e}"))?;
    loop {
        let size = ctx.with_log(|s| s.size()).await?;
        if size >= cp.size {
            let (c, n) = (cp.clone(), note.clone());
            ctx.with_log(move |s| s.accept_covered(&c, &n))
                .await?
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let end = (size + crate::log_routes::ENTRIES_MAX).min(cp.size);
        let body = get_limited(
            http,
            &format!("{url}/v1/log/entries?start={size}&end={end}"),
            READ_BYTES_MAX,
        )
        .await?;
        let entries: loyalty_wire::LogEntries =
            serde_json::from_slice(&body).map_err(|e| format!("entries: {e}"))?;
        let entries: Vec<Vec<u8>> = entries
            .entries
            .into_iter()
            .map(|e| e.entry.into_bytes())
            .collect();
        if entries.is_empty() || size + entries.len() as u64 > cp.size {
            return Err(format!(
                "the primary served {} entries from {size}",
                entries.len()
            ));
        }
        let proof = consistency_proof(http, url, size + entries.len() as u64, cp.size).await?;
        let (c, n) = (cp.clone(), note.clone());
        ctx.with_log(move |s| s.append_pulled(&entries, &c, &n, &proof))
            .await?
            .map_err(|e| format!("pulled entries: {e}"))?;
    }
}

async fn pull_loop(ctx: Arc<Following>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    loop {
        tokio::time::sleep(PULL_INTERVAL).await;
        let url = ctx.follow_url();
        if url == ctx.public_url.trim_end_matches('/') {
            continue;
        }
        let r = pull_once(&ctx, &http, &url).await;
        ctx.status.lock().expect("status lock").last_error = r.err();
    }
}

/// Whether this standby may take over from the committed head `head`; the size and root it
/// would record.
fn eligible(s: &mut StandbyLog, head: Option<&Head>, ha: &Ha) -> Result<(u64, String), String> {
    let root = |s: &StandbyLog, n: u64| -> Result<String, String> {
        s.root_at(n)
            .map_err(|e| e.to_string())?
            .map(hex::encode)
            .ok_or_else(|| format!("no root at {n}"))
    };
    let Some(h) = head else {
        if ha.standby_of.is_some() {
            return Err("no committed head yet: the primary creates it".into());
        }
        let size = s.size();
        return Ok((size, root(s, size)?));
    };
    if !h.in_sync.contains(&ha.name) {
        return Err(format!(
            "not in the in-sync set {:?}: only those may take over",
            h.in_sync
        ));
    }
    s.settle(h.size, &h.root).map_err(|e| e.to_string())?;
    let size = s.size();
    if size < h.size {
        return Err(format!(
            "holds {size} entries, fewer than the committed {}",
            h.size
        ));
    }
    if root(s, h.size)? != h.root {
        return Err(format!(
            "DIVERGED: the first {} entries here do not have the committed root; re-seed this node from the primary's backup",
            h.size
        ));
    }
    if size > h.size && h.in_sync != [ha.name.clone()] {
        return Err(format!(
            "holds {size} entries, beyond the committed {} while another node was in sync",
            h.size
        ));
    }
    Ok((size, root(s, size)?))
}

async fn watch_loop(
    ctx: Arc<Following>,
    backend: Arc<dyn LockBackend>,
    took: tokio::sync::mpsc::Sender<(Lease, Locked)>,
) {
    let ha = ctx.ha.clone();
    let ttl = Duration::from_secs(ha.lease_ttl_s as u64);
    let mut leaderless_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        match backend.leader().await {
            Ok(Some(l)) => {
                leaderless_since = None;
                let mut s = ctx.status.lock().expect("status lock");
                s.leader = Some(l.name.clone());
                if l.name != ha.name {
                    s.leader_url = Some(l.url.clone());
                }
                continue;
            }
            Ok(None) => {
                // Nobody leads now; the last leader's URL stays where to pull from.
                ctx.status.lock().expect("status lock").leader = None;
            }
            Err(e) => {
                ctx.status.lock().expect("status lock").last_error = Some(e.to_string());
                continue;
            }
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if let Some(r) = ctx.refused.active(ctx.shared.checkpoint().size) {
            let why = format!(
                "the restore guard refused to let this node sign; it leads again only once it holds the log partners saw ({} entries): {}",
                r.known, r.detail
            );
            let mut st = ctx.status.lock().expect("status lock");
            if st.not_eligible.as_ref() != Some(&why) {
                tracing::warn!(reason = %why, "nobody leads, and this node may not take over");
                st.not_eligible = Some(why);
            }
            continue;
        }
        let Ok(head) = backend.fetch().await else {
            continue;
        };
        let h = head.as_ref().map(|l| l.head.clone());
        let ha2 = ha.clone();
        let verdict = match ctx.with_log(move |s| eligible(s, h.as_ref(), &ha2)).await {
            Ok(v) => v,
            Err(_) => continue,
        };
        {
            let mut st = ctx.status.lock().expect("status lock");
            let why = verdict.as_ref().err().cloned();
            if why != st.not_eligible {
                match &why {
                    Some(w) => {
                        tracing::info!(reason = %w, "nobody leads, and this node may not take over")
                    }
                    None => tracing::info!("nobody leads; this node is eligible to take over"),
                }
                st.not_eligible = why;
            }
        }
        if verdict.is_err() {
            continue;
        }
        // The node that led last, back from a crash, leaves the takeover to the standby it
        // had in sync (which holds at least as much) for two lease times.
        if let Some(h) = &head {
            if h.head.leader == ha.name
                && h.head.in_sync.iter().any(|n| n != &ha.name)
                && since.elapsed() < 2 * ttl
            {
                continue;
            }
        }
        let me = LeaderInfo {
            name: ha.name.clone(),
            url: ctx.public_url.clone(),
            epoch: 0,
        };
        let lease = match backend.campaign(&me, ha.lease_ttl_s).await {
            Ok(Some(l)) => l,
            Ok(None) | Err(_) => continue,
        };
        // Under the lease the head can no longer move (a former leader's compare fails):
        // judge it once more, then record this node as its leader.
        let Ok(head) = backend.fetch().await else {
            let _ = backend.resign(&lease).await;
            continue;
        };
        let h = head.as_ref().map(|l| l.head.clone());
        let ha2 = ha.clone();
        let Ok(Ok((size, root))) = ctx.with_log(move |s| eligible(s, h.as_ref(), &ha2)).await
        else {
            let _ = backend.resign(&lease).await;
            continue;
        };
        let new = Head {
            epoch: lease.epoch,
            leader: ha.name.clone(),
            size,
            root,
            in_sync: vec![ha.name.clone()],
        };
        let r = match &head {
            None => backend.create(&lease, &new).await,
            Some(old) => backend.replace(&lease, old, &new).await,
        };
        match r {
            Ok(locked) => {
                if let Ok(Some(to)) = backend.switchover().await {
                    if to == ha.name {
                        let _ = backend.request_switchover(None).await;
                    }
                }
                tracing::info!(epoch = lease.epoch, size, "took over the leadership");
                let _ = took.send((lease, locked)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the takeover's compare-and-swap failed");
                let _ = backend.resign(&lease).await;
            }
        }
    }
}
