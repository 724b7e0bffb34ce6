//! The node's command line: `init`, `run`, `backup`, `keys`, ... (the `loyalty-node` binary,
//! crate `loyalty-node`, adds `demo`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rand_core::{OsRng, RngCore};

use ledger::checkpoint::NoteSigner;
use ledger::types::BrandId;
use ledger_store::log::Log;
use ledger_store::store::Store;

use crate::config::Config;
use crate::control::control_request;
use crate::datadir::{CONFIG_FILE, DB_DIR, KEY_FILE};

// The data directory's names and the signing key, at the paths other modules have used.
pub use crate::datadir::{check_key_permissions, load_seed, CONTROL_SOCKET};
use crate::keys::{Keys, Scope};
use crate::sequencer::now;

/// How long a stopping node waits for a partner's chunk that is being stored (one chunk takes
/// well under a second on the benchmark machine).
const CATCHUP_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "loyalty-node",
    version,
    about = "A brand node of the open loyalty ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The node's commands; the `loyalty-node` binary flattens them into its own command line.
#[derive(Subcommand)]
pub enum Command {
    /// Create a data directory: signing key, config.toml, empty log, first admin API key.
    Init {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        brand: BrandId,
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        #[arg(long)]
        public_url: Option<String>,
        /// The log origin (default `loyalty.example/<brand>`).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Serve until SIGTERM or SIGINT, then drain requests and close the store cleanly.
    Run {
        #[arg(long)]
        data: PathBuf,
        /// Start as the standby of the primary at this URL (needs the `[ha]` section; the
        /// same as `ha.standby_of` in the config).
        #[arg(long)]
        standby_of: Option<String>,
    },
    /// Manual switchover: ask the primary to hand the leadership over to this node (its
    /// in-sync standby), and wait until this node leads. Run it on the standby's host.
    Promote {
        #[arg(long)]
        data: PathBuf,
        /// How long to wait for the handover, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// Convert the state records of a data directory written by an older release to this
    /// release's format (what `run` does at start), printing progress; the node must be
    /// stopped. Safe to interrupt: a later `migrate` or `run` takes it up again.
    Migrate {
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a consistent copy of the store to another directory (node running or stopped).
    Backup {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        to: PathBuf,
    },
    /// Manage API keys of a stopped node (use the admin API or `loyalty keys` while running).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The guard against forward jumps of the system clock (`limits.clock_jump_ms_max`).
    Clock {
        #[command(subcommand)]
        action: ClockAction,
    },
}

#[derive(Subcommand)]
pub enum ClockAction {
    /// After checking the system clock, let a running node that stopped writes on a forward
    /// jump of the clock take writes again (at the current time).
    Confirm {
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed once.
    Create {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
    /// List keys (without secrets).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long)]
        data: PathBuf,
        key_id: String,
    },
}

/// `migrate`: converts the store's state records in place, with a progress line.
fn migrate(data: &Path) -> Result<()> {
    let config = Config::load(data)?;
    let t0 = std::time::Instant::now();
    let mut moved = 0;
    let store = Store::open_migrating(&data.join(DB_DIR), config.storage.log(), &mut |n| {
        moved = n;
        eprintln!("migrating: {n} tree hashes moved");
    })
    .with_context(|| format!("open the store in {}", data.display()))?;
    let migrated = ledger_store::log::migrate(&store, &mut |done| {
        eprintln!("migrating: {done} state records converted");
    })?;
    if migrated || moved > 0 {
        store.flush()?;
        println!(
            "migrated the store of {} in {:.1} s",
            data.display(),
            t0.elapsed().as_secs_f64()
        );
    } else {
        println!("{}: already in this release's format", data.display());
    }
    Ok(())
}

/// Opens everything and serves until a shutdown signal. A node with an `[ha]` section runs
/// the role loop of [`crate::ha::node`] instead (standby, takeover, fenced commits).
pub async fn run(data: PathBuf, config: Config) -> Result<()> {
    if config.ha.is_some() {
        return crate::ha::node::run(data, config).await;
    }
    let log = crate::server::open_log(&data, &config)?;
    crate::server::serve(data, config, log, Box::new(ledger_store::log::NoGate), None).await
}

/// Entry point of the binary. Every file and directory the node creates is private to its user
/// (umask 077: directories 0700, files 0600): the store holds redemption preimages and API key
/// hashes, the data directory the signing key.
pub fn main() -> Result<()> {
    execute(Cli::parse().command)
}

/// Makes every file and directory this process creates from now on private to its user
/// (umask 077).
pub fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Runs one of the node's commands, with [`private_files`].
pub fn execute(command: Command) -> Result<()> {
    private_files();
    match command {
        Command::Init {
            data,
            brand,
            listen,
            public_url,
            origin,
        } => init(&data, brand, listen, public_url, origin),
        Command::Run { data, standby_of } => {
            let mut config = Config::load(&data)?;
            if let Some(url) = standby_of {
                let ha = config.ha.as_mut().context(
                    "--standby-of needs the [ha] section in config.toml (docs/operator-guide.md, \"A standby\")",
                )?;
                ha.standby_of = Some(url);
                config.validate()?;
            }
            crate::server::init_tracing(&config);
            check_data_permissions(&data)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let served = rt.block_on(run(data, config));
            // The runtime's tasks are dropped and its blocking work joined; the partners'
            // catch-up pool is not part of it, so it is waited for before the process exits.
            drop(rt);
            if !crate::federation::sync::wait_for_catchup(CATCHUP_STOP_WAIT) {
                tracing::warn!("a partner's catch-up was still running at exit");
            }
            served
        }
        Command::Promote { data, wait_s } => {
            let config = Config::load(&data)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(crate::ha::node::promote(
                &config,
                std::time::Duration::from_secs(wait_s),
            ))
        }
        Command::Backup { data, to } => backup(&data, &to),
        Command::Migrate { data } => migrate(&data),
        Command::Keys { action } => keys(action),
        Command::Clock {
            action: ClockAction::Confirm { data },
        } => {
            let answer = control_request(&data.join(CONTROL_SOCKET), "/clock/confirm", "{}")?;
            println!("clock confirmed: {answer}");
            Ok(())
        }
    }
}

fn init(
    data: &Path,
    brand: BrandId,
    listen: SocketAddr,
    public_url: Option<String>,
    origin: Option<String>,
) -> Result<()> {
    if data.join(CONFIG_FILE).exists() {
        bail!(
            "{} already holds a node (config.toml exists)",
            data.display()
        );
    }
    create_private_dir(data)?;
    let mut config = Config::new(brand, listen, public_url);
    if let Some(o) = origin {
        config.origin = o;
    }
    config.validate()?;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    write_secret(&data.join(KEY_FILE), &format!("{}\n", hex::encode(seed)))?;
    std::fs::write(data.join(CONFIG_FILE), config.to_commented_toml())?;
    let signer = NoteSigner::from_seed(&config.origin, &seed)?;
    let log = Log::open(&data.join(DB_DIR), signer)?;
    let keys = Keys::load(log.store().clone())?;
    let (admin_key, _) = keys.create("admin", &[Scope::Admin], now().get())?;
    println!(
        "initialised node for brand {} in {}",
        config.brand,
        data.display()
    );
    println!("verifier key: {}", log.verifier_key());
    println!("admin API key (shown once, stored hashed): {admin_key}");
    println!("start it with: loyalty-node run --data {}", data.display());
    Ok(())
}

fn write_secret(path: &Path, contents: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700 for the last component.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("create {}", dir.display()))
}

/// At start-up: the signing key must be private (else the node refuses to start), and the data
/// directory and its store are made private (0700) if an older version left them open.
fn check_data_permissions(data: &Path) -> Result<()> {
    check_key_permissions(&data.join(KEY_FILE))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for dir in [data.to_path_buf(), data.join(DB_DIR)] {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("make {} private (chmod 700)", dir.display()))?;
                tracing::warn!(dir = %dir.display(), "was readable by group or others; now mode 700");
            }
        }
    }
    Ok(())
}

fn backup(data: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        bail!("{} exists; backups go to a new directory", to.display());
    }
    create_private_dir(to)?;
    let to = &to.canonicalize()?;
    let socket = data.join(CONTROL_SOCKET);
    match Store::open(&data.join(DB_DIR)) {
        Ok(store) => {
            store.backup(&to.join(DB_DIR))?;
            println!("backed up the stopped node to {}", to.display());
        }
        Err(e) if socket.exists() => {
            tracing::debug!(error = %e, "store is locked; asking the running node");
            let body = serde_json::json!({ "to": to.join(DB_DIR) }).to_string();
            let answer = control_request(&socket, "/backup", &body)?;
            println!("backed up the running node to {}: {answer}", to.display());
        }
        Err(e) => {
            return Err(e)
                .context("open the store (is the node running without its control socket?)")
        }
    }
    // The configuration and the signing key go along, so the copy is a whole node.
    std::fs::copy(data.join(CONFIG_FILE), to.join(CONFIG_FILE))?;
    let seed = std::fs::read_to_string(data.join(KEY_FILE))?;
    write_secret(&to.join(KEY_FILE), &seed)?;
    Ok(())
}

fn keys(action: KeysAction) -> Result<()> {
    let open = |data: &Path| -> Result<Keys> {
        let store = Store::open(&data.join(DB_DIR))
            .context("open the store (stop the node, or use the admin API / `loyalty keys`)")?;
        Ok(Keys::load(store)?)
    };
    match action {
        KeysAction::Create { data, name, scopes } => {
            let keys = open(&data)?;
            let (key, r) = keys.create(&name, &scopes, now().get())?;
            println!("key id: {}", r.key_id);
            println!("key (shown once): {key}");
        }
        KeysAction::List { data } => {
            for k in open(&data)?.list() {
                let scopes: Vec<String> = k
                    .scopes
                    .iter()
                    .map(|s| format!("{s:?}").to_lowercase())
                    .collect();
                println!(
                    "{}  {:<20} {:<24} {}",
                    k.key_id,
                    k.name,
                    scopes.join(","),
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
        KeysAction::Revoke { data, key_id } => {
            open(&data)?.revoke(&key_id)?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
