//! The node's configuration: one typed struct read from `config.toml` in the data directory,
//! with environment overrides (`LOYALTY_<KEY>`), validated at start-up with messages that name
//! the key that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ledger::checkpoint::{NoteVerifier, SignatureType};
use ledger::types::BrandId;

// The data directory's layout, at the paths other modules have used.
pub use crate::datadir::{CONFIG_FILE, DB_DIR, KEY_FILE};

/// Limits on what the node accepts; each is enforced and has an error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub body_bytes_max: usize,
    /// Writes waiting for the sequencer before new ones are answered 503.
    pub queue_depth_max: usize,
    /// Most writes committed in one batch (one fsync, one checkpoint).
    pub batch_writes_max: usize,
    /// A request not answered within this time is answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Requests served at once, over every route together; more wait for a slot.
    pub concurrency_max: usize,
    /// How long a request waits for a slot before it is answered 503 `overloaded`.
    pub queue_wait_ms: u64,
    /// A request body not fully received within this time is answered 408 `body_timeout`.
    pub body_timeout_ms: u64,
    /// A connection whose request head (line and headers) is not complete within this time,
    /// counted from its first byte or from the end of the previous answer, is closed.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open client connections at most; more are closed at once (and counted).
    pub connections_max: usize,
    /// A forward jump of the system clock larger than this stops writes until an operator
    /// confirms the new time (`loyalty-node clock confirm`).
    pub clock_jump_ms_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: 64 * 1024,
            queue_depth_max: 16_384,
            batch_writes_max: 4_096,
            request_timeout_ms: 10_000,
            concurrency_max: 1_024,
            queue_wait_ms: 1_000,
            body_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            connections_max: 1_024,
            clock_jump_ms_max: 300_000,
        }
    }
}

/// Federation settings (spec/federation.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    /// Cosignatures from distinct pinned partners a checkpoint needs to be final.
    pub witness_quorum: usize,
    /// Pause between two sync rounds with a partner that is up to date.
    pub sync_interval_ms: u64,
    /// Pause between two rounds of gathering cosignatures for the node's own checkpoints.
    pub witness_interval_ms: u64,
    /// How far a peer request's time may be from this node's clock.
    pub peer_clock_skew_ms: u64,
    /// Whether partner URLs may use plain `http://` to hosts other than loopback addresses
    /// (the peer requests are signed, but their answers and the public reads are not private).
    pub allow_http_partners: bool,
}

impl Default for Federation {
    fn default() -> Self {
        Federation {
            witness_quorum: 0,
            sync_interval_ms: 1000,
            witness_interval_ms: 1000,
            peer_clock_skew_ms: 60_000,
            allow_http_partners: false,
        }
    }
}

/// Memory budgets of the node's RocksDB stores (its own log's, and one per partner's mirror).
/// The state machine keeps only the small global state in memory and reads every other record
/// through RocksDB's block cache, so these bound what the process holds whatever the number
/// of members and entries. The defaults keep a node with five partners under 1 GiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Block cache of the node's own store (data, index and filter blocks), in MiB.
    pub block_cache_mib: usize,
    /// Memtables of the node's own store, all column families together, in MiB.
    pub memtable_mib: usize,
    /// Block cache of each partner's mirror, in MiB.
    pub mirror_block_cache_mib: usize,
    /// Memtables of every partner's mirror together, in MiB: the mirrors share them, so one
    /// catching up writes into large memtables while the others follow with little.
    pub mirror_memtable_mib: usize,
    /// Records the node's own state reads by key again and again (members, lots, holds),
    /// kept decoded-ready in memory ahead of the block cache, in MiB.
    pub record_cache_mib: usize,
    /// The same for each partner's mirror, in MiB.
    pub mirror_record_cache_mib: usize,
    /// SST files the node's own store keeps open at once (each mirror keeps at most
    /// [`MIRROR_MAX_OPEN_FILES`]); with `limits.connections_max`, what the open-file limit
    /// must allow.
    pub max_open_files: u32,
}

/// SST files each partner's mirror keeps open at once.
pub const MIRROR_MAX_OPEN_FILES: u32 = 512;

impl Default for Storage {
    fn default() -> Self {
        Storage {
            block_cache_mib: 256,
            memtable_mib: 128,
            mirror_block_cache_mib: 32,
            mirror_memtable_mib: 160,
            record_cache_mib: 64,
            mirror_record_cache_mib: 16,
            max_open_files: 512,
        }
    }
}

/// The most MiB any one storage budget may be (64 GiB).
pub const STORAGE_MIB_MAX: usize = 64 * 1024;

impl Storage {
    /// The `[storage]` table of [`Config::to_commented_toml`], with a blank line after it.
    fn to_commented_toml(&self) -> String {
        format!(
            r#"[storage]
# Memory budgets of RocksDB, in MiB. Members, lots, holds and ids live on disk and are read
# through the block cache; the defaults keep a node with five partners under 1 GiB.
# Block cache of this node's own store (data, index and filter blocks).
block_cache_mib = {cache}
# Memtables of this node's own store.
memtable_mib = {memtable}
# Block cache of each partner's mirror.
mirror_block_cache_mib = {mcache}
# Memtables of every partner's mirror together (shared: a mirror catching up uses what the
# others leave).
mirror_memtable_mib = {mmemtable}
# Records read by key again and again (members, lots, holds), kept in memory ahead of the
# block cache: for this node's own state, and for each partner's mirror (0: none).
record_cache_mib = {rcache}
mirror_record_cache_mib = {mrcache}
# SST files this node's store keeps open at once (each mirror keeps at most 64). The process's
# open-file limit must allow these, the mirrors' and limits.connections_max.
max_open_files = {open_files}

"#,
            cache = self.block_cache_mib,
            memtable = self.memtable_mib,
            mcache = self.mirror_block_cache_mib,
            mmemtable = self.mirror_memtable_mib,
            rcache = self.record_cache_mib,
            mrcache = self.mirror_record_cache_mib,
            open_files = self.max_open_files,
        )
    }

    /// Checks the storage budgets, naming the first wrong key.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        for (key, v) in [
            ("storage.block_cache_mib", self.block_cache_mib),
            ("storage.memtable_mib", self.memtable_mib),
            (
                "storage.mirror_block_cache_mib",
                self.mirror_block_cache_mib,
            ),
            ("storage.mirror_memtable_mib", self.mirror_memtable_mib),
        ] {
            if !(8..=STORAGE_MIB_MAX).contains(&v) {
                return invalid(key, "must be 8 to 65536 (MiB)");
            }
        }
        for (key, v) in [
            ("storage.record_cache_mib", self.record_cache_mib),
            (
                "storage.mirror_record_cache_mib",
                self.mirror_record_cache_mib,
            ),
        ] {
            if v > STORAGE_MIB_MAX {
                return invalid(key, "must be 0 to 65536 (MiB)");
            }
        }
        if !(64..=1_000_000).contains(&self.max_open_files) {
            return invalid("storage.max_open_files", "must be 64 to 1000000");
        }
        Ok(())
    }

    /// The budget of the node's own store.
    pub fn log(&self) -> ledger_store::store::StoreConfig {
        ledger_store::store::StoreConfig {
            block_cache_bytes: self.block_cache_mib << 20,
            memtable_bytes: self.memtable_mib << 20,
            shared_memtables: None,
            record_cache_bytes: self.record_cache_mib << 20,
            max_open_files: self.max_open_files,
        }
    }

    /// The memtable budget every partner's mirror shares.
    pub fn mirror_memtables(&self) -> ledger_store::store::SharedMemtables {
        ledger_store::store::SharedMemtables::new(self.mirror_memtable_mib << 20)
    }

    /// The budget of one partner's mirror; every mirror opened with `shared` (made once for
    /// all of them, [`Storage::mirror_memtables`]) shares its memtables with the others.
    pub fn mirror(
        &self,
        shared: &ledger_store::store::SharedMemtables,
    ) -> ledger_store::store::StoreConfig {
        ledger_store::store::StoreConfig {
            block_cache_bytes: self.mirror_block_cache_mib << 20,
            memtable_bytes: shared.bytes(),
            shared_memtables: Some(shared.clone()),
            record_cache_bytes: self.mirror_record_cache_mib << 20,
            max_open_files: MIRROR_MAX_OPEN_FILES,
        }
    }
}

/// A partner brand pinned in the configuration (spec/federation.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// The partner's brand id.
    pub brand: BrandId,
    /// Base URL of the partner's node.
    pub url: String,
    /// The partner's C2SP verifier key; without it the partner is listed but not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_key: Option<String>,
}

/// The node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The brand this node runs.
    pub brand: BrandId,
    /// The log's origin: the name of its signing key and the first line of its checkpoints.
    pub origin: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// URL partners and apps use to reach this node.
    pub public_url: String,
    /// Log format: `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Federation settings.
    #[serde(default)]
    pub federation: Federation,
    /// Memory budgets of the stores.
    #[serde(default)]
    pub storage: Storage,
    /// Partners pinned in the configuration (more can be added through the admin API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<PartnerConfig>,
    /// A standby and a fenced commit point (docs/operator-guide.md, "A standby"); absent, the
    /// node runs alone exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<Ha>,
}

/// The `[ha]` section: this node, its peer (the other node of the brand), and the etcd
/// cluster holding the leadership lease and the committed head (node/src/ha).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ha {
    /// This node's name in the in-sync set (unique among the brand's nodes).
    pub name: String,
    /// The etcd endpoints (`http://host:port`), all members of one cluster.
    pub etcd: Vec<String>,
    /// The key prefix of this brand's records in etcd (default `/loyalty/<brand>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The other node's name.
    pub peer_name: String,
    /// The other node's base URL (where it serves `/v1/ha/replicate` and the log).
    pub peer_url: String,
    /// Time to live of the leadership lease, in seconds: a dead primary is replaced after
    /// about this long.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: i64,
    /// How long the primary waits for the standby's acknowledgement of a batch before it
    /// drops the standby from the in-sync set and goes on alone.
    #[serde(default = "default_replicate_timeout_ms")]
    pub replicate_timeout_ms: u64,
    /// Start as the standby of this URL (`loyalty-node run --standby-of URL`) instead of
    /// campaigning for the leadership at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_of: Option<String>,
    /// Refuse to sign after a takeover or restore when fewer than this many partners'
    /// witnesses answered the restore guard (0: the guard asks, but goes on when none answer).
    #[serde(default)]
    pub guard_quorum: usize,
}

fn default_lease_ttl_s() -> i64 {
    5
}

fn default_replicate_timeout_ms() -> u64 {
    1_000
}

impl Ha {
    /// The key prefix in etcd.
    pub fn prefix_for(&self, brand: &BrandId) -> String {
        if self.prefix.is_empty() {
            format!("/loyalty/{brand}")
        } else {
            self.prefix.clone()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !name_ok(&self.name) {
            return invalid(
                "ha.name",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        if !name_ok(&self.peer_name) || self.peer_name == self.name {
            return invalid(
                "ha.peer_name",
                "must be 1 to 64 letters, digits, '-', '_' or '.', and differ from ha.name",
            );
        }
        if self.etcd.is_empty() || self.etcd.len() > 9 {
            return invalid("ha.etcd", "must list 1 to 9 endpoints");
        }
        for e in &self.etcd {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return invalid(
                    "ha.etcd",
                    "each endpoint must start with http:// or https://",
                );
            }
        }
        for (key, url) in [
            ("ha.peer_url", Some(&self.peer_url)),
            ("ha.standby_of", self.standby_of.as_ref()),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return invalid(key, "must start with http:// or https://");
                }
            }
        }
        if !(1..=60).contains(&self.lease_ttl_s) {
            return invalid("ha.lease_ttl_s", "must be 1 to 60");
        }
        if !(10..=60_000).contains(&self.replicate_timeout_ms) {
            return invalid("ha.replicate_timeout_ms", "must be 10 to 60000");
        }
        if self.guard_quorum > PARTNERS_MAX {
            return invalid("ha.guard_quorum", "must be at most 64");
        }
        Ok(())
    }
}

fn default_log_format() -> String {
    "text".into()
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// A configuration for a new node.
    pub fn new(brand: BrandId, listen: SocketAddr, public_url: Option<String>) -> Config {
        Config {
            origin: format!("loyalty.example/{brand}"),
            brand,
            listen,
            public_url: public_url.unwrap_or_else(|| format!("http://{listen}")),
            log_format: default_log_format(),
            limits: Limits::default(),
            federation: Federation::default(),
            storage: Storage::default(),
            partners: Vec::new(),
            ha: None,
        }
    }

    /// Reads `config.toml` from `data_dir`, applies environment overrides, and validates.
    pub fn load(data_dir: &Path) -> Result<Config, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `LOYALTY_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &str, v: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env {
                var: var.into(),
                message: e.to_string(),
            })
        }
        macro_rules! env {
            ($var:literal, $field:expr) => {
                if let Some(v) = get($var) {
                    $field = parse($var, v)?;
                }
            };
        }
        env!("LOYALTY_BRAND", self.brand);
        env!("LOYALTY_ORIGIN", self.origin);
        env!("LOYALTY_LISTEN", self.listen);
        env!("LOYALTY_PUBLIC_URL", self.public_url);
        env!("LOYALTY_LOG_FORMAT", self.log_format);
        env!("LOYALTY_BODY_BYTES_MAX", self.limits.body_bytes_max);
        env!("LOYALTY_QUEUE_DEPTH_MAX", self.limits.queue_depth_max);
        env!("LOYALTY_BATCH_WRITES_MAX", self.limits.batch_writes_max);
        env!("LOYALTY_REQUEST_TIMEOUT_MS", self.limits.request_timeout_ms);
        env!("LOYALTY_CONCURRENCY_MAX", self.limits.concurrency_max);
        env!("LOYALTY_QUEUE_WAIT_MS", self.limits.queue_wait_ms);
        env!("LOYALTY_BODY_TIMEOUT_MS", self.limits.body_timeout_ms);
        env!(
            "LOYALTY_HEADER_READ_TIMEOUT_MS",
            self.limits.header_read_timeout_ms
        );
        env!("LOYALTY_IDLE_TIMEOUT_MS", self.limits.idle_timeout_ms);
        env!("LOYALTY_CONNECTIONS_MAX", self.limits.connections_max);
        env!("LOYALTY_CLOCK_JUMP_MS_MAX", self.limits.clock_jump_ms_max);
        env!("LOYALTY_WITNESS_QUORUM", self.federation.witness_quorum);
        env!("LOYALTY_SYNC_INTERVAL_MS", self.federation.sync_interval_ms);
        env!(
            "LOYALTY_WITNESS_INTERVAL_MS",
            self.federation.witness_interval_ms
        );
        env!(
            "LOYALTY_PEER_CLOCK_SKEW_MS",
            self.federation.peer_clock_skew_ms
        );
        env!(
            "LOYALTY_ALLOW_HTTP_PARTNERS",
            self.federation.allow_http_partners
        );
        env!("LOYALTY_BLOCK_CACHE_MIB", self.storage.block_cache_mib);
        env!("LOYALTY_MEMTABLE_MIB", self.storage.memtable_mib);
        env!(
            "LOYALTY_MIRROR_BLOCK_CACHE_MIB",
            self.storage.mirror_block_cache_mib
        );
        env!(
            "LOYALTY_MIRROR_MEMTABLE_MIB",
            self.storage.mirror_memtable_mib
        );
        env!("LOYALTY_RECORD_CACHE_MIB", self.storage.record_cache_mib);
        env!(
            "LOYALTY_MIRROR_RECORD_CACHE_MIB",
            self.storage.mirror_record_cache_mib
        );
        env!("LOYALTY_MAX_OPEN_FILES", self.storage.max_open_files);
        Ok(())
    }

    /// Checks every value, naming the first wrong key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if !ledger::checkpoint::is_valid_key_name(&self.origin)
            || RESERVED_ORIGINS.contains(&self.origin.as_str())
        {
            return invalid(
                "origin",
                "must be a non-empty key name without spaces or '+' (and not a reserved domain-separation label)",
            );
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return invalid("public_url", "must start with http:// or https://");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return invalid("log_format", "must be \"text\" or \"json\"");
        }
        let l = &self.limits;
        if !(1024..=16 * 1024 * 1024).contains(&l.body_bytes_max) {
            return invalid("limits.body_bytes_max", "must be 1024 to 16777216");
        }
        if !(1..=1_000_000).contains(&l.queue_depth_max) {
            return invalid("limits.queue_depth_max", "must be 1 to 1000000");
        }
        if !(1..=ledger_store::log::BATCH_WRITES_MAX).contains(&l.batch_writes_max) {
            return invalid("limits.batch_writes_max", "must be 1 to 8192");
        }
        if !(100..=600_000).contains(&l.request_timeout_ms) {
            return invalid("limits.request_timeout_ms", "must be 100 to 600000");
        }
        if !(1..=100_000).contains(&l.concurrency_max) {
            return invalid("limits.concurrency_max", "must be 1 to 100000");
        }
        if !(1..=60_000).contains(&l.queue_wait_ms) {
            return invalid("limits.queue_wait_ms", "must be 1 to 60000");
        }
        if !(100..=600_000).contains(&l.body_timeout_ms) {
            return invalid("limits.body_timeout_ms", "must be 100 to 600000");
        }
        if !(100..=600_000).contains(&l.header_read_timeout_ms) {
            return invalid("limits.header_read_timeout_ms", "must be 100 to 600000");
        }
        if !(1_000..=3_600_000).contains(&l.idle_timeout_ms) {
            return invalid("limits.idle_timeout_ms", "must be 1000 to 3600000");
        }
        if l.idle_timeout_ms <= (l.queue_wait_ms + l.request_timeout_ms).max(l.body_timeout_ms) {
            return invalid(
                "limits.idle_timeout_ms",
                "must be longer than limits.queue_wait_ms + limits.request_timeout_ms and than limits.body_timeout_ms (a request waiting or being served moves no bytes)",
            );
        }
        if !(1..=1_000_000).contains(&l.connections_max) {
            return invalid("limits.connections_max", "must be 1 to 1000000");
        }
        if !(1_000..=86_400_000).contains(&l.clock_jump_ms_max) {
            return invalid("limits.clock_jump_ms_max", "must be 1000 to 86400000");
        }
        let f = &self.federation;
        if f.witness_quorum > PARTNERS_MAX {
            return invalid("federation.witness_quorum", "must be at most 64");
        }
        if !(10..=3_600_000).contains(&f.sync_interval_ms) {
            return invalid("federation.sync_interval_ms", "must be 10 to 3600000");
        }
        if !(10..=3_600_000).contains(&f.witness_interval_ms) {
            return invalid("federation.witness_interval_ms", "must be 10 to 3600000");
        }
        if !(1000..=3_600_000).contains(&f.peer_clock_skew_ms) {
            return invalid("federation.peer_clock_skew_ms", "must be 1000 to 3600000");
        }
        self.storage.validate()?;
        if let Some(ha) = &self.ha {
            ha.validate()?;
        }
        if self.partners.len() > PARTNERS_MAX {
            return invalid("partners", "at most 64 partners");
        }
        let mut origins = vec![self.origin.clone()];
        for (i, p) in self.partners.iter().enumerate() {
            match check_partner(&self.brand, p, f.allow_http_partners) {
                Err(e) => {
                    return Err(ConfigError::Invalid {
                        key: "partners",
                        message: format!("partner {} ({}): {e}", i + 1, p.brand),
                    })
                }
                Ok(Some(v)) => {
                    if origins.iter().any(|o| o == v.name()) {
                        return Err(ConfigError::Invalid {
                            key: "partners",
                            message: format!(
                                "partner {}: origin {} is already this node's or another partner's",
                                p.brand,
                                v.name()
                            ),
                        });
                    }
                    origins.push(v.name().to_owned());
                }
                Ok(None) => {}
            }
            if self.partners[..i].iter().any(|q| q.brand == p.brand) {
                return Err(ConfigError::Invalid {
                    key: "partners",
                    message: format!("partner {} is listed twice", p.brand),
                });
            }
        }
        Ok(())
    }

    /// The commented `config.toml` that `init` writes.
    pub fn to_commented_toml(&self) -> String {
        format!(
            r#"# Configuration of a loyalty ledger node.
# Every key can be overridden by an environment variable: LOYALTY_<KEY> in upper case
# (LOYALTY_LISTEN, LOYALTY_PUBLIC_URL, LOYALTY_BODY_BYTES_MAX, ...).

# The brand this node runs (lowercase letters, digits, '-', '.').
brand = "{brand}"
# The log's origin: the name of the signing key and the first line of every checkpoint.
# Partners and auditors pin it together with the verifier key. Do not change it once used.
origin = "{origin}"
# Address to listen on.
listen = "{listen}"
# URL partners and apps use to reach this node.
public_url = "{public_url}"
# Log format on stderr: "text" or "json".
log_format = "{log_format}"

[limits]
# Largest request body, in bytes.
body_bytes_max = {body}
# Writes waiting for the sequencer before new ones get 503 with Retry-After.
queue_depth_max = {queue}
# Most writes per committed batch (one fsync and one signed checkpoint per batch).
batch_writes_max = {batch}
# Requests not answered within this many milliseconds get 503 "timeout".
request_timeout_ms = {timeout}
# Requests served at once, over every route together.
concurrency_max = {conc}
# How long a request waits for a slot before it gets 503 "overloaded" with Retry-After.
queue_wait_ms = {queue_wait}
# A request body not received within this many milliseconds gets 408 "body_timeout".
body_timeout_ms = {body_timeout}
# A connection whose request head is not complete within this many milliseconds (from its
# first byte, or from the end of the previous answer) is closed.
header_read_timeout_ms = {header_timeout}
# A connection on which no byte moves for this many milliseconds is closed.
idle_timeout_ms = {idle_timeout}
# Open client connections at most; more are closed at once. The node refuses to start unless
# its open-file limit (ulimit -n) covers this plus a reserve for its stores.
connections_max = {connections}
# A forward jump of the system clock larger than this stops writes until an operator
# confirms the time with `loyalty-node clock confirm`.
clock_jump_ms_max = {clock_jump}

[federation]
# Cosignatures from distinct pinned partners a checkpoint needs before it is final for
# cross-brand use (0: final once signed).
witness_quorum = {quorum}
# Pause between sync rounds with an up-to-date partner, in milliseconds.
sync_interval_ms = {sync}
# Pause between rounds of gathering cosignatures for this node's checkpoints.
witness_interval_ms = {witness}
# How far a partner's signed request time may be from this node's clock.
peer_clock_skew_ms = {skew}
# Whether partner URLs may use plain http:// to hosts other than loopback addresses.
allow_http_partners = {allow_http}

{storage}# Partners, one [[partners]] table each. A partner is trusted only once its verifier key
# (from its operator, out of band) is pinned here or through the admin API.
# [[partners]]
# brand = "brand-b"
# url = "https://ledger.brand-b.example"
# verifier_key = "loyalty.example/brand-b+1234abcd+AZ..."
{partners}"#,
            brand = self.brand,
            origin = self.origin,
            listen = self.listen,
            public_url = self.public_url,
            log_format = self.log_format,
            body = self.limits.body_bytes_max,
            queue = self.limits.queue_depth_max,
            batch = self.limits.batch_writes_max,
            timeout = self.limits.request_timeout_ms,
            conc = self.limits.concurrency_max,
            queue_wait = self.limits.queue_wait_ms,
            body_timeout = self.limits.body_timeout_ms,
            header_timeout = self.limits.header_read_timeout_ms,
            idle_timeout = self.limits.idle_timeout_ms,
            connections = self.limits.connections_max,
            clock_jump = self.limits.clock_jump_ms_max,
            quorum = self.federation.witness_quorum,
            sync = self.federation.sync_interval_ms,
            witness = self.federation.witness_interval_ms,
            skew = self.federation.peer_clock_skew_ms,
            allow_http = self.federation.allow_http_partners,
            storage = self.storage.to_commented_toml(),
            partners = self
                .partners
                .iter()
                .map(|p| {
                    let mut t =
                        format!("[[partners]]\nbrand = \"{}\"\nurl = {:?}\n", p.brand, p.url);
                    if let Some(k) = &p.verifier_key {
                        t.push_str(&format!("verifier_key = {k:?}\n"));
                    }
                    t
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

/// Most partners one node has.
pub const PARTNERS_MAX: usize = 64;
/// Origins that would make one kind of signature readable as another (spec/federation.md §1).
pub const RESERVED_ORIGINS: [&str; 4] = [
    "cosignature/v1",
    "loyalty-peer-request/v1",
    ledger::agreement::AGREEMENT_DOMAIN,
    ledger::statement::STATEMENT_DOMAIN,
];

/// Checks a partner's settings; the message says what is wrong. A URL carries no credentials
/// (it is shown on the public explorer), and uses `http://` only to a loopback host unless
/// `allow_http` (`federation.allow_http_partners`).
pub fn check_partner(
    own: &BrandId,
    p: &PartnerConfig,
    allow_http: bool,
) -> Result<Option<NoteVerifier>, String> {
    if &p.brand == own {
        return Err("a node cannot partner with its own brand".into());
    }
    if !(p.url.starts_with("http://") || p.url.starts_with("https://")) || p.url.len() > 2048 {
        return Err("url must start with http:// or https://".into());
    }
    let url = reqwest::Url::parse(&p.url).map_err(|_| "url is not a valid URL".to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "url must not hold credentials (user:password@): it is shown on the public explorer"
                .into(),
        );
    }
    if url.scheme() == "http" && !allow_http && !is_loopback(&url) {
        return Err(
            "url must use https:// unless its host is a loopback address (set federation.allow_http_partners to allow plain http)"
                .into(),
        );
    }
    match &p.verifier_key {
        None => Ok(None),
        Some(k) => {
            let v = NoteVerifier::parse(k).map_err(|e| format!("verifier_key: {e}"))?;
            if v.signature_type() != SignatureType::Ed25519 {
                return Err("verifier_key must be an Ed25519 (0x01) note key".into());
            }
            if RESERVED_ORIGINS.contains(&v.name()) {
                return Err("verifier_key names a reserved origin".into());
            }
            Ok(Some(v))
        }
    }
}

/// Whether a URL's host is a loopback address (`localhost`, 127.0.0.0/8 or `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(
            "brand-a".parse().unwrap(),
            "127.0.0.1:7700".parse().unwrap(),
            None,
        )
    }

    #[test]
    fn commented_template_parses_back_to_the_same_config() {
        let c = config();
        let back: Config = toml::from_str(&c.to_commented_toml()).unwrap();
        assert_eq!(back, c);
        back.validate().unwrap();
    }

    #[test]
    fn environment_overrides_config_values() {
        let mut c = config();
        c.apply_env(|k| match k {
            "LOYALTY_LISTEN" => Some("127.0.0.1:9999".into()),
            "LOYALTY_QUEUE_DEPTH_MAX" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.limits.queue_depth_max, 7);
        let err = c
            .apply_env(|k| (k == "LOYALTY_LISTEN").then(|| "nope".into()))
            .unwrap_err();
        assert!(err.to_string().contains("LOYALTY_LISTEN"));
    }

    #[test]
    fn validation_names_the_wrong_key() {
        let mut c = config();
        c.limits.batch_writes_max = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.batch_writes_max"));
        let mut c = config();
        c.origin = "has space".into();
        assert!(c.validate().unwrap_err().to_string().contains("origin"));
        let e = toml::from_str::<Config>("brand = \"a\"\nbogus = 1").unwrap_err();
        assert!(e.to_string().contains("bogus") || e.to_string().contains("unknown"));
    }
}
