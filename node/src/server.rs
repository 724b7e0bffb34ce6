//! `loyalty-node run`: wires config, store, sequencer, keys and the router, serves HTTP until
//! SIGTERM/SIGINT, then drains in-flight requests and closes the store cleanly.

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

use ledger::checkpoint::NoteSigner;
use ledger::log::{Log, NoGate};

use crate::api::{router, App};
use crate::config::{Config, DB_DIR};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::sequencer::Sequencer;

/// Sets up `tracing` output on stderr, as text or JSON, filtered by `RUST_LOG` (default info).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Opens everything and serves until a shutdown signal. A node with an `[ha]` section runs
/// the role loop of [`crate::ha::node`] instead (standby, takeover, fenced commits).
pub async fn run(data: PathBuf, config: Config) -> Result<()> {
    if config.ha.is_some() {
        return crate::ha::node::run(data, config).await;
    }
    let log = open_log(&data, &config)?;
    serve(data, config, log, Box::new(NoGate), None).await
}

/// Opens the node's own log in `data` (migrating an older store first).
pub fn open_log(data: &std::path::Path, config: &Config) -> Result<Log> {
    let seed = crate::cli::load_seed(data)?;
    let signer = NoteSigner::from_seed(&config.origin, &seed)?;
    Log::open_with(
        &data.join(DB_DIR),
        signer,
        config.storage.log(),
        &mut |done| {
            tracing::info!(
                records = done,
                "migrating state records to this release's format"
            )
        },
    )
    .context("open the log")
}

/// What a leading node under coordination adds to [`serve`]: a future that ends the serving
/// (the node lost its leadership), work to start once the node is open (the restore guard,
/// the leadership watch), and extra routes.
pub struct Leading {
    /// The metrics the node exports (shared with the commit gate).
    pub metrics: Arc<Metrics>,
    pub stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    pub started: Box<dyn FnOnce(Arc<App>) + Send>,
    pub routes: Router,
    /// Wraps the whole router (the layer that holds answers until node-local records are
    /// replicated, [`crate::ha::local`]).
    pub wrap: Box<dyn FnOnce(Router) -> Router + Send>,
}

/// Serves `log` (committing through `gate`) until a shutdown signal, or until
/// `leading.stop` ends.
pub async fn serve(
    data: PathBuf,
    config: Config,
    log: Log,
    gate: Box<dyn crate::sequencer::Gate>,
    leading: Option<Leading>,
) -> Result<()> {
    let seed = crate::cli::load_seed(&data)?;
    let verifier_key = NoteSigner::from_seed(&config.origin, &seed)?.verifier_key_string();
    let store = log.store().clone();
    tracing::info!(brand = %config.brand, origin = %config.origin, size = log.size(), "log opened");
    let metrics = leading
        .as_ref()
        .map_or_else(|| Arc::new(Metrics::new()), |l| l.metrics.clone());
    let (sequencer, shared, seq_thread) = Sequencer::start_gated(
        log,
        config.limits.queue_depth_max,
        config.limits.batch_writes_max,
        metrics.clone(),
        gate,
    );
    let keys = Keys::load(store.clone())?;
    let federation = crate::federation::Federation::open(
        &config,
        data.clone(),
        &seed,
        store.clone(),
        metrics.clone(),
        shared.clone(),
    )
    .context("open the federation state and mirrors")?;
    let clock = crate::clock::ClockGuard::new(config.limits.clock_jump_ms_max, metrics.clone());
    shared.hold_housekeeping_with(clock.held_flag());
    let app = Arc::new(App {
        config: config.clone(),
        store,
        sequencer,
        shared,
        keys,
        metrics,
        verifier_key: verifier_key.clone(),
        federation: federation.clone(),
        admission: crate::guard::Admission::new(&config.limits),
        clock: clock.clone(),
    });
    let clock_task = crate::clock::spawn(clock);
    let (stop, service) = match leading {
        None => (None, router(app.clone())),
        Some(l) => {
            (l.started)(app.clone());
            (Some(l.stop), (l.wrap)(router(app.clone()).merge(l.routes)))
        }
    };
    let fd_limit = crate::listener::ensure_fd_limit(config.limits.connections_max)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let control = spawn_control_socket(&data, app.clone())?;
    federation.start();
    tracing::info!(listen = %config.listen, verifier_key = %verifier_key, fd_limit, "serving");
    crate::listener::serve(
        listener,
        service,
        &config.limits,
        app.metrics.clone(),
        async move {
            match stop {
                Some(stop) => tokio::select! {
                    _ = shutdown_signal() => {},
                    _ = stop => {},
                },
                None => shutdown_signal().await,
            }
        },
    )
    .await;
    tracing::info!("shutting down: in-flight requests drained");
    control.abort();
    clock_task.abort();
    let _ = std::fs::remove_file(data.join(crate::cli::CONTROL_SOCKET));
    // Dropping the last handle to the sequencer ends its thread, which flushes the store.
    drop(app);
    tokio::task::spawn_blocking(move || seq_thread.join())
        .await
        .ok();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    to: PathBuf,
}

/// Serves `POST /backup` on a Unix socket in the data directory, reachable only by users who
/// can reach the data directory (which holds the signing key anyway).
fn spawn_control_socket(
    data: &std::path::Path,
    app: Arc<App>,
) -> Result<tokio::task::JoinHandle<()>> {
    let path = data.join(crate::cli::CONTROL_SOCKET);
    let _ = std::fs::remove_file(&path);
    #[cfg(unix)]
    {
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("bind {}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        let router = Router::new()
            .route(
                "/backup",
                post(
                    |State(app): State<Arc<App>>, Json(b): Json<BackupRequest>| async move {
                        let store = app.store.clone();
                        let to = b.to.clone();
                        match tokio::task::spawn_blocking(move || store.backup(&to)).await {
                            Ok(Ok(())) => {
                                tracing::info!(to = %b.to.display(), "backup written");
                                (
                                    StatusCode::OK,
                                    format!("{{\"to\":{:?}}}", b.to.display().to_string()),
                                )
                                    .into_response()
                            }
                            Ok(Err(e)) => ApiError::internal(e).into_response(),
                            Err(e) => ApiError::internal(e).into_response(),
                        }
                    },
                ),
            )
            .route(
                "/clock/confirm",
                // The body is read (and ignored) before answering, so that the client never
                // writes into a closed connection.
                post(
                    |State(app): State<Arc<App>>, _body: axum::body::Bytes| async move {
                        Json(app.clock.confirm()).into_response()
                    },
                ),
            )
            .with_state(app);
        Ok(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, app);
        Ok(tokio::spawn(async {}))
    }
}
