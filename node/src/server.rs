//! `loyalty-node run`: wires config, store, sequencer, keys and the router, serves HTTP until
//! SIGTERM/SIGINT, then drains in-flight requests and closes the store cleanly.

use anyhow::{Context, Result};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;

use ledger::checkpoint::NoteSigner;
use ledger_store::log::{Log, Migrated};

use crate::app::App;
use crate::config::Config;
use crate::datadir::DB_DIR;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::router::router;
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

/// Opens the node's own log in `data` (migrating an older store first).
pub fn open_log(data: &std::path::Path, config: &Config) -> Result<Log> {
    let seed = crate::datadir::load_seed(data)?;
    let signer = NoteSigner::from_seed(&config.origin, &seed)?;
    Log::open_with(
        &data.join(DB_DIR),
        signer,
        config.storage.log(),
        &mut |done| match done {
            Migrated::TreeHashes(n) => {
                tracing::info!(hashes = n, "moving tree hashes to this release's layout")
            }
            Migrated::StateRecords(n) => {
                tracing::info!(
                    records = n,
                    "migrating state records to this release's format"
                )
            }
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
    let seed = crate::datadir::load_seed(&data)?;
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
    let control = crate::control::spawn_control_socket(&data, app.clone())?;
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
    let _ = std::fs::remove_file(data.join(crate::datadir::CONTROL_SOCKET));
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
