//! A log monitor, as Certificate Transparency monitors follow CT logs: it follows one or more
//! brands' logs continuously and, each round, runs a resumed audit of every log
//! ([`crate::verify::verify_log`] with the state and point saved by the previous round): the
//! new checkpoint's signature, its consistency with the checkpoint seen before, the witness
//! quorum's cosignatures when one is configured, and the new entries fetched, checked and
//! replayed through the state machine.
//!
//! A fork (two signed histories, or a log that no longer extends what was verified), a shrink,
//! a bad entry, a replay mismatch or a bad checkpoint is an [`Alert`]: the log stops being
//! followed (its saved audit stays at the last verified point, so a restarted monitor finds
//! the same fault again), the alert is counted in the metrics and, when configured, posted to
//! the operator's webhook with a bounded timeout. A log that is unreachable, or a cosigned
//! checkpoint short of the quorum, is a failed round, reported and retried the next round.
//!
//! Invariants: an alert is raised once per log (then it is no longer followed); the audit's
//! state is saved only for entries proven part of a checkpoint verified by the pinned key;
//! every partner-chosen size is bounded by the audit itself, and the webhook URL, its timeout
//! and the interval come from the operator's configuration only, within fixed limits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use ledger::checkpoint::NoteVerifier;
use ledger::witness::WitnessPolicy;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::verify::{verify_log, ReplayStore, VerifyError, VerifyOptions};

/// Most logs one monitor follows.
pub const LOGS_MAX: usize = 256;
/// The shortest interval between two rounds.
pub const INTERVAL_MS_MIN: u64 = 100;
/// The longest interval between two rounds (one day).
pub const INTERVAL_MS_MAX: u64 = 86_400_000;
/// The default interval between two rounds.
pub const INTERVAL_MS_DEFAULT: u64 = 10_000;
/// The longest a webhook call may take.
pub const WEBHOOK_TIMEOUT_MS_MAX: u64 = 30_000;
/// The default webhook timeout.
pub const WEBHOOK_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// The longest log name (it names the log's state directory).
pub const NAME_BYTES_MAX: usize = 64;

/// One log to follow.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A short name: letters, digits, `.`, `_`, `-` (it names the log's state directory).
    pub name: String,
    /// The node's base URL.
    pub node: String,
    /// The log's C2SP verifier key, pinned out of band.
    pub log_key: String,
    /// Witnesses whose cosignatures the log's checkpoints must carry (cosignature keys or
    /// partners' log keys, as `loyalty verify --witness`).
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// How many of them (default: all).
    #[serde(default)]
    pub quorum: Option<usize>,
}

/// A monitor's configuration (the `loyalty monitor --config` file, TOML).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Milliseconds between two rounds ([`INTERVAL_MS_MIN`] to [`INTERVAL_MS_MAX`]).
    #[serde(default = "interval_default")]
    pub interval_ms: u64,
    /// Where to post alerts (http or https), if anywhere.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The longest a webhook call may take (at most [`WEBHOOK_TIMEOUT_MS_MAX`]).
    #[serde(default = "webhook_timeout_default")]
    pub webhook_timeout_ms: u64,
    /// The logs to follow (1 to [`LOGS_MAX`]).
    pub logs: Vec<LogConfig>,
}

fn interval_default() -> u64 {
    INTERVAL_MS_DEFAULT
}

fn webhook_timeout_default() -> u64 {
    WEBHOOK_TIMEOUT_MS_DEFAULT
}

/// Why a configuration is refused; names the key.
#[derive(Debug, thiserror::Error)]
#[error("monitor configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The configuration key at fault (`logs[2].log_key`, `webhook_url`, ...).
    pub key: String,
    /// Why.
    pub reason: String,
}

fn config_error(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A log's validated configuration.
struct Followed {
    name: String,
    client: Client,
    key: NoteVerifier,
    policy: Option<WitnessPolicy>,
    /// The alert that stopped following it.
    alerted: Option<Alert>,
    /// Whether the last round failed for want of witnesses (reported once until it passes).
    unwitnessed: bool,
    stats: Stats,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    verified_size: u64,
    replayed_total: u64,
    rounds_ok: u64,
    rounds_failed: u64,
    alerts: BTreeMap<&'static str, u64>,
    last_success_ms: Option<u64>,
}

/// Something a monitor found that an operator must act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The log's name.
    pub log: String,
    /// `fork`, `shrink`, `bad_entry`, `replay_mismatch` or `bad_checkpoint`
    /// ([`crate::verify::Failure::kind`]).
    pub kind: String,
    /// The first bad index (or the size of the checkpoint at fault).
    pub index: u64,
    /// What the audit found, in words.
    pub message: String,
    /// When the monitor found it (ms since the Unix epoch, the monitor's clock).
    pub detected_ms: u64,
}

/// What one round found for one log.
#[derive(Debug)]
pub enum Outcome {
    /// The log verifies up to `size`; `replayed` entries were new this round.
    Verified {
        /// The latest checkpoint's size.
        size: u64,
        /// Entries fetched, checked and replayed this round.
        replayed: u64,
        /// With a witness quorum: the size up to which the log is cosigned.
        witnessed: Option<u64>,
    },
    /// The log misbehaved; it is no longer followed.
    Alert(Alert),
    /// The round could not be completed (node unreachable, quorum not met, a local store
    /// error); retried next round.
    Failed(String),
}

/// One log's result of a round.
#[derive(Debug)]
pub struct Event {
    /// The log's name.
    pub log: String,
    /// What was found.
    pub outcome: Outcome,
}

/// Opens the audit store (state and saved point) of the log with this name.
pub type StoreOpener = Box<dyn FnMut(&str) -> Result<ReplayStore, String> + Send>;

/// Follows logs; see the module documentation.
pub struct Monitor {
    logs: Vec<Followed>,
    interval: Duration,
    webhook: Option<(reqwest::Client, String)>,
    webhook_failures: u64,
    open_store: StoreOpener,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Monitor {
    /// A monitor of the configured logs, whose audits live in the stores `open_store` opens.
    pub fn new(config: &MonitorConfig, open_store: StoreOpener) -> Result<Monitor, ConfigError> {
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&config.interval_ms) {
            return Err(config_error(
                "interval_ms",
                format!("must be {INTERVAL_MS_MIN} to {INTERVAL_MS_MAX}"),
            ));
        }
        if config.logs.is_empty() || config.logs.len() > LOGS_MAX {
            return Err(config_error(
                "logs",
                format!("name 1 to {LOGS_MAX} logs to follow"),
            ));
        }
        let webhook = match &config.webhook_url {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| config_error("webhook_url", e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(config_error("webhook_url", "must be an http(s) URL"));
                }
                if config.webhook_timeout_ms == 0
                    || config.webhook_timeout_ms > WEBHOOK_TIMEOUT_MS_MAX
                {
                    return Err(config_error(
                        "webhook_timeout_ms",
                        format!("must be 1 to {WEBHOOK_TIMEOUT_MS_MAX}"),
                    ));
                }
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_millis(config.webhook_timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| config_error("webhook_url", e.to_string()))?;
                Some((http, url.clone()))
            }
        };
        let mut logs: Vec<Followed> = Vec::new();
        for (i, l) in config.logs.iter().enumerate() {
            let at = |k: &str| format!("logs[{i}].{k}");
            if l.name.is_empty()
                || l.name.len() > NAME_BYTES_MAX
                || l.name.starts_with('.')
                || !l
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(config_error(
                    at("name"),
                    format!("1 to {NAME_BYTES_MAX} letters, digits, '.', '_' or '-', not starting with '.'"),
                ));
            }
            if logs.iter().any(|f| f.name == l.name) {
                return Err(config_error(at("name"), "names another log too"));
            }
            let key: NoteVerifier = l
                .log_key
                .parse()
                .map_err(|e| config_error(at("log_key"), format!("{e}")))?;
            let witnesses = l
                .witnesses
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    w.parse::<NoteVerifier>().map_err(|e| {
                        config_error(format!("logs[{i}].witnesses[{j}]"), format!("{e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let policy = if witnesses.is_empty() && l.quorum.is_none() {
                None
            } else {
                // Default: every distinct witness named.
                let all = crate::federation::witness_policy(key.clone(), &witnesses, 0)
                    .map_err(|e| config_error(at("witnesses"), e.to_string()))?;
                let quorum = l.quorum.unwrap_or(all.witnesses.len());
                Some(
                    crate::federation::witness_policy(key.clone(), &witnesses, quorum)
                        .map_err(|e| config_error(at("quorum"), e.to_string()))?,
                )
            };
            let client =
                Client::new(&l.node, None).map_err(|e| config_error(at("node"), e.to_string()))?;
            logs.push(Followed {
                name: l.name.clone(),
                client,
                key,
                policy,
                alerted: None,
                unwitnessed: false,
                stats: Stats::default(),
            });
        }
        Ok(Monitor {
            logs,
            interval: Duration::from_millis(config.interval_ms),
            webhook,
            webhook_failures: 0,
            open_store,
        })
    }

    /// The configured interval between two rounds.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many logs are still followed (not stopped by an alert).
    pub fn following(&self) -> usize {
        self.logs.iter().filter(|l| l.alerted.is_none()).count()
    }

    /// One round: a resumed audit of every followed log, in configuration order; alerts are
    /// posted to the webhook before this returns.
    pub async fn round(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..self.logs.len() {
            if self.logs[i].alerted.is_some() {
                continue;
            }
            let outcome = self.audit(i).await;
            if let Outcome::Alert(a) = &outcome {
                self.post(a).await;
            }
            events.push(Event {
                log: self.logs[i].name.clone(),
                outcome,
            });
        }
        events
    }

    async fn audit(&mut self, i: usize) -> Outcome {
        let store = match (self.open_store)(&self.logs[i].name) {
            Ok(s) => s,
            Err(e) => {
                self.logs[i].stats.rounds_failed += 1;
                return Outcome::Failed(format!("the audit store: {e}"));
            }
        };
        let log = &mut self.logs[i];
        let options = VerifyOptions {
            witness_policy: log.policy.clone(),
            replay_store: Some(store),
            // A monitor's round reads only what is new; the full check reads every record.
            invariants_at_end: false,
            ..VerifyOptions::default()
        };
        match verify_log(&log.client, &log.key, options).await {
            Ok(s) => {
                log.unwitnessed = false;
                log.stats.verified_size = s.entries;
                log.stats.replayed_total += s.entries_replayed;
                log.stats.rounds_ok += 1;
                log.stats.last_success_ms = Some(now_ms());
                Outcome::Verified {
                    size: s.entries,
                    replayed: s.entries_replayed,
                    witnessed: s.witnessed.map(|w| w.size),
                }
            }
            Err(VerifyError::Invalid { index, reason }) => {
                let kind = reason.kind();
                *log.stats.alerts.entry(kind).or_default() += 1;
                let alert = Alert {
                    log: log.name.clone(),
                    kind: kind.to_owned(),
                    index,
                    message: format!("the log fails verification at index {index}: {reason}"),
                    detected_ms: now_ms(),
                };
                log.alerted = Some(alert.clone());
                Outcome::Alert(alert)
            }
            Err(e) => {
                log.stats.rounds_failed += 1;
                if matches!(e, VerifyError::NotWitnessed(_)) {
                    log.unwitnessed = true;
                }
                Outcome::Failed(e.to_string())
            }
        }
    }

    /// Posts an alert to the webhook, once, within its timeout.
    async fn post(&mut self, alert: &Alert) {
        let Some((http, url)) = &self.webhook else {
            return;
        };
        let ok = match http.post(url).json(alert).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if !ok {
            self.webhook_failures += 1;
        }
    }

    /// How many alerts could not be delivered to the webhook.
    pub fn webhook_failures(&self) -> u64 {
        self.webhook_failures
    }

    /// The monitor's metrics in the Prometheus text format (for a node_exporter textfile
    /// collector, or any scraper).
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        let label = |l: &Followed| format!("log=\"{}\"", l.name);
        family(
            "loyalty_monitor_following",
            "gauge",
            "1 while the log is followed, 0 once an alert stopped it.",
            self.logs
                .iter()
                .map(|l| (label(l), u8::from(l.alerted.is_none()).to_string()))
                .collect(),
        );
        family(
            "loyalty_monitor_verified_entries",
            "gauge",
            "Entries of the log verified and replayed.",
            self.logs
                .iter()
                .map(|l| (label(l), l.stats.verified_size.to_string()))
                .collect(),
        );
        family(
            "loyalty_monitor_replayed_entries_total",
            "counter",
            "Entries fetched, checked and replayed by this process.",
            self.logs
                .iter()
                .map(|l| (label(l), l.stats.replayed_total.to_string()))
                .collect(),
        );
        family(
            "loyalty_monitor_rounds_total",
            "counter",
            "Rounds by result (ok, failed).",
            self.logs
                .iter()
                .flat_map(|l| {
                    [
                        (format!("{},result=\"ok\"", label(l)), l.stats.rounds_ok),
                        (
                            format!("{},result=\"failed\"", label(l)),
                            l.stats.rounds_failed,
                        ),
                    ]
                })
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        );
        family(
            "loyalty_monitor_alerts_total",
            "counter",
            "Alerts by kind (fork, shrink, bad_entry, replay_mismatch, bad_checkpoint).",
            self.logs
                .iter()
                .flat_map(|l| {
                    [
                        "fork",
                        "shrink",
                        "bad_entry",
                        "replay_mismatch",
                        "bad_checkpoint",
                    ]
                    .into_iter()
                    .map(move |k| {
                        (
                            format!("{},kind=\"{k}\"", label(l)),
                            l.stats.alerts.get(k).copied().unwrap_or(0).to_string(),
                        )
                    })
                })
                .collect(),
        );
        family(
            "loyalty_monitor_unwitnessed",
            "gauge",
            "1 when the last round found the log short of its witness quorum.",
            self.logs
                .iter()
                .map(|l| (label(l), u8::from(l.unwitnessed).to_string()))
                .collect(),
        );
        family(
            "loyalty_monitor_last_success_ms",
            "gauge",
            "When the log last verified (ms since the Unix epoch; 0: never).",
            self.logs
                .iter()
                .map(|l| (label(l), l.stats.last_success_ms.unwrap_or(0).to_string()))
                .collect(),
        );
        let _ = writeln!(
            out,
            "# HELP loyalty_monitor_webhook_failures_total Alerts the webhook did not accept in time.\n# TYPE loyalty_monitor_webhook_failures_total counter\nloyalty_monitor_webhook_failures_total {}",
            self.webhook_failures
        );
        out
    }
}
