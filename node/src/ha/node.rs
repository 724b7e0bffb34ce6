//! The role loop of a node with an `[ha]` section.
//!
//! Every start begins as a standby ([`super::follow`]): it opens its store as a verified mirror of
//! its own log, serves the read routes and tiles, receives the primary's batches, pulls what
//! it misses, and watches the leadership. When nobody leads and this node is eligible (listed
//! in sync in the committed head and holding exactly it), it campaigns; with the lease it
//! records itself as the head's leader (one compare-and-swap), stops following, and leads
//! (`lead`): the log opens for writing, the restore guard asks the partners' witnesses,
//! and every commit passes the [`Fence`]. A leader that loses its lease, is fenced, or hands
//! over (`loyalty-node promote` on the standby) stops serving and exits with
//! [`EXIT_STEPPED_DOWN`]; its supervisor restarts it, as a standby.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::commit::{CommitStatus, Fence, SharedFence, GUARD_PASSED, GUARD_PENDING, GUARD_REFUSED};
use super::etcd::EtcdLock;
use super::follow::follow;
use super::local::{body_key, Journal, LocalLink, Shipper};
use super::lock::{Lease, LockBackend, Locked};
use super::refusal::{Refusal, Refused};
use super::{EXIT_STEPPED_DOWN, STATUS_PATH};
use crate::api::App;
use crate::config::{Config, Ha};

/// How often a standby looks at the leadership.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the node under coordination until a shutdown signal (or until it steps down, which
/// exits the process with [`EXIT_STEPPED_DOWN`]).
pub async fn run(data: PathBuf, config: Config) -> Result<()> {
    let ha = config.ha.clone().context("no [ha] section")?;
    let prefix = ha.prefix_for(&config.brand);
    let deadline = Instant::now() + Duration::from_secs(30);
    let backend: Arc<dyn LockBackend> = loop {
        match EtcdLock::connect(&ha.etcd, &prefix).await {
            Ok(b) => break Arc::new(b),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot reach etcd yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("connect to etcd (ha.etcd)"),
        }
    };
    let Some((lease, locked)) = follow(&data, &config, &ha, backend.clone()).await? else {
        return Ok(());
    };
    lead(data, config, ha, backend, lease, locked).await
}

/// Why a leading node stopped.
#[derive(Debug, Clone, thiserror::Error)]
enum StepDown {
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("handed over to {0}")]
    Switchover(String),
    #[error("the restore guard refused to sign: {0}")]
    GuardRefused(String),
}

/// The leading phase: the log opens for writing, every commit passes the [`Fence`].
async fn lead(
    data: PathBuf,
    config: Config,
    ha: Ha,
    backend: Arc<dyn LockBackend>,
    lease: Lease,
    locked: Locked,
) -> Result<()> {
    let log = {
        let (data, config) = (data.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match crate::server::open_log(&data, &config) {
                    Ok(l) => return Ok(l),
                    Err(e) if Instant::now() < deadline && format!("{e:#}").contains("lock") => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await??
    };
    anyhow::ensure!(
        log.size() == locked.head.size,
        "the log holds {} entries but the head this node just recorded is {}",
        log.size(),
        locked.head.size
    );
    let guard = Arc::new(AtomicU8::new(GUARD_PENDING));
    let status = Arc::new(Mutex::new(CommitStatus::default()));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    // Node-local records are journaled from here on, and shipped to the standby.
    let journal = Arc::new(Journal::new(lease.epoch));
    let link = LocalLink::new(
        journal.clone(),
        Duration::from_millis(ha.replicate_timeout_ms) * 2
            + Duration::from_secs(ha.lease_ttl_s as u64),
    );
    log.store().observe_local(Some(journal));
    let seed = crate::cli::load_seed(&data)?;
    let shipper = Arc::new(Shipper {
        link: link.clone(),
        store: log.store().clone(),
        key: body_key(&seed),
        peer_url: ha.peer_url.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("an HTTP client")?,
        rt: tokio::runtime::Handle::current(),
        timeout: Duration::from_millis(ha.replicate_timeout_ms),
        state: Mutex::new(Default::default()),
    });
    let refused = Refused::load(log.store().clone())?;
    let held = log.size();
    let fence = Fence::new(
        backend.clone(),
        lease.clone(),
        locked,
        &ha,
        tokio::runtime::Handle::current(),
        log.store().clone(),
        guard.clone(),
        status.clone(),
        metrics.clone(),
    )
    .with_local(shipper.clone());
    let fence = Arc::new(Mutex::new(fence));
    let shipper_thread = shipper.spawn(fence.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<StepDown>(4);
    let reason = Arc::new(Mutex::new(None::<StepDown>));
    let reason_in = reason.clone();
    let stop = Box::pin(async move {
        if let Some(r) = stop_rx.recv().await {
            *reason_in.lock().expect("reason lock") = Some(r);
        }
    });
    let status_routes = Router::new()
        .route(STATUS_PATH, get(leader_status))
        .with_state((status.clone(), ha.name.clone(), link.clone()));
    let hold = link.clone();
    let gate = Arc::new(super::refusal::Gate {
        refused: refused.clone(),
        // A node the guard refused commits nothing: its size stays the one it opened with.
        size: Box::new(move || held),
    });
    let wrap = Box::new(move |r: Router| {
        r.layer(axum::middleware::from_fn_with_state(
            hold,
            super::local::hold_until_replicated,
        ))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            super::refusal::gate,
        ))
    });
    let started = {
        let (backend, lease, ha) = (backend.clone(), lease.clone(), ha.clone());
        Box::new(move |app: Arc<App>| {
            tokio::spawn(restore_guard(
                app.clone(),
                guard,
                refused,
                ha.guard_quorum,
                stop_tx.clone(),
            ));
            tokio::spawn(leadership_watch(
                Arc::downgrade(&app),
                backend,
                lease,
                ha,
                status,
                stop_tx,
            ));
        })
    };
    crate::server::serve(
        data,
        config,
        log,
        Box::new(SharedFence(fence)),
        Some(crate::server::Leading {
            metrics,
            stop,
            started,
            routes: status_routes,
            wrap,
        }),
    )
    .await?;
    link.stop();
    let _ = tokio::task::spawn_blocking(move || shipper_thread.join()).await;
    let why = reason.lock().expect("reason lock").clone();
    match why {
        None => {
            let _ = backend.resign(&lease).await;
            Ok(())
        }
        Some(r) => {
            let _ = backend.resign(&lease).await;
            tracing::error!(reason = %r, "stepped down: this node no longer leads; restart it to follow the new primary as its standby");
            std::process::exit(EXIT_STEPPED_DOWN);
        }
    }
}

async fn leader_status(
    State((status, name, link)): State<(Arc<Mutex<CommitStatus>>, String, Arc<LocalLink>)>,
) -> Response {
    let s = status.lock().expect("status lock").clone();
    let local = link.status();
    Json(serde_json::json!({
        "role": "primary",
        "name": name,
        "committed_size": s.committed_size,
        "in_sync": s.in_sync,
        "epoch": s.epoch,
        "standby_size": s.standby_size,
        "batches_replicated": s.batches_replicated,
        "batches_alone": s.batches_alone,
        "fenced": s.fenced,
        "local": local,
    }))
    .into_response()
}

/// Asks the partners' witnesses before the first new signature; lets commits through only
/// when none knows a larger log.
async fn restore_guard(
    app: Arc<App>,
    guard: Arc<AtomicU8>,
    refused: Arc<Refused>,
    quorum: usize,
    stop: tokio::sync::mpsc::Sender<StepDown>,
) {
    let cp = app.shared.checkpoint();
    let report = super::guard::ask(&app.federation, &cp.note, cp.size).await;
    match super::guard::judge(&report, cp.size, quorum) {
        Ok(()) => {
            tracing::info!(
                size = cp.size,
                answered = report.answered.len(),
                unreachable = report.unreachable.len(),
                "restore guard passed"
            );
            guard.store(GUARD_PASSED, Ordering::Release);
        }
        Err(e) => {
            tracing::error!(error = %e, "restore guard: refusing to sign");
            // No signed tree head of the older log is served from here on (durably, when a
            // partner saw more): before anything else.
            let known = match &e {
                super::guard::GuardError::Behind { known, .. } => *known,
                super::guard::GuardError::Quorum { .. } => 0,
            };
            let r = Refusal {
                known,
                held: cp.size,
                detail: e.to_string(),
            };
            if let Err(err) = refused.refuse(r) {
                tracing::error!(error = %err, "the restore guard's refusal could not be recorded");
            }
            guard.store(GUARD_REFUSED, Ordering::Release);
            let _ = stop.send(StepDown::GuardRefused(e.to_string())).await;
        }
    }
}

/// Ends the leading phase when the lease is lost, a commit was fenced, or a switchover to
/// the in-sync standby was asked for. Holds the node only weakly, so that it never keeps a
/// stopping node (and its sequencer) alive.
async fn leadership_watch(
    app: std::sync::Weak<App>,
    backend: Arc<dyn LockBackend>,
    lease: Lease,
    ha: Ha,
    status: Arc<Mutex<CommitStatus>>,
    stop: tokio::sync::mpsc::Sender<StepDown>,
) {
    let mut last_switchover_check = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if lease.is_lost() {
            let _ = stop
                .send(StepDown::Fenced("the leadership lease was lost".into()))
                .await;
            return;
        }
        let Some(app) = app.upgrade() else {
            return;
        };
        if !app.shared.is_ready() {
            let why = status
                .lock()
                .expect("status lock")
                .fenced
                .clone()
                .unwrap_or_else(|| "the sequencer stopped".into());
            let _ = stop.send(StepDown::Fenced(why)).await;
            return;
        }
        if last_switchover_check.elapsed() >= WATCH_INTERVAL {
            last_switchover_check = Instant::now();
            if let Ok(Some(to)) = backend.switchover().await {
                let in_sync = status.lock().expect("status lock").in_sync.clone();
                if to == ha.peer_name && in_sync.contains(&to) {
                    tracing::info!(to = %to, "switchover asked: handing the leadership over");
                    let _ = backend.resign(&lease).await;
                    let _ = stop.send(StepDown::Switchover(to)).await;
                    return;
                }
            }
        }
    }
}

/// `loyalty-node promote`: asks the leader to hand over to this node (its standby) and waits
/// until this node leads.
pub async fn promote(config: &Config, wait: Duration) -> Result<()> {
    let ha = config
        .ha
        .clone()
        .context("promote needs the [ha] section")?;
    let backend = EtcdLock::connect(&ha.etcd, &ha.prefix_for(&config.brand))
        .await
        .context("connect to etcd (ha.etcd)")?;
    backend.request_switchover(Some(&ha.name)).await?;
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(Some(l)) = backend.leader().await {
            if l.name == ha.name {
                let _ = backend.request_switchover(None).await;
                println!("{} leads (epoch {})", l.name, l.epoch);
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            let _ = backend.request_switchover(None).await;
            anyhow::bail!(
                "{} does not lead after {wait:?}: the primary hands over only to a standby in sync (see GET /v1/ha/status on both nodes)",
                ha.name
            );
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}
