//! `loyalty-node demo`: a federation of three brands on this machine and a narrated, scripted
//! day of it, for a first look and for tests.
//!
//! The demo starts an airline, a coffee chain and a gym as child processes of this binary
//! (`init`, then `run`, each on a free loopback port, with its data in `<dir>/<brand>`), pins
//! them as each other's partners, publishes their policies, signs agreements, and runs the
//! scenario of `scenario` through the SDK, printing what happens and where to look. Then it
//! keeps the nodes running until Ctrl-C (or stops them at once with `--exit-after-scenario`)
//! and leaves the data where it said.
//!
//! Invariants: every wait is bounded; every step checks what it expects against the nodes' APIs
//! and stops the demo with the API's answer when it differs (nothing is skipped silently); the
//! nodes the demo started are stopped (SIGTERM, then SIGKILL after `process::STOP_TIMEOUT`)
//! however the demo ends, and their data stays.
//!
//! Modules: `process` (the child processes), `scenario` and `settle` (the steps),
//! `steps` (narration and checked SDK calls), `report` (the JSON report, the closing
//! summary).

mod process;
mod report;
mod scenario;
mod settle;
mod steps;

pub use process::DemoNode;
pub use report::Report;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// Time limit of one request the demo sends.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two probes of a condition the demo waits for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What `loyalty-node demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the nodes' data goes (default `./loyalty-demo-<UTC time>`); new or empty.
    pub dir: Option<PathBuf>,
    /// Stop the nodes after the scenario instead of waiting for Ctrl-C.
    pub exit_after_scenario: bool,
    /// Where to write the JSON report of the scenario.
    pub report: Option<PathBuf>,
}

/// One brand of the demo: its program as the narration and the report describe it.
#[derive(Debug, Serialize)]
pub struct BrandSpec {
    /// The brand id (also the data directory's name).
    pub brand: &'static str,
    /// What kind of business it is.
    pub kind: &'static str,
    /// Its display name.
    pub name: &'static str,
    /// What its points are called.
    pub points: &'static str,
    /// Its base fiat currency (its rate card's).
    pub currency: &'static str,
    /// The value of one point in `currency`, as a decimal string.
    pub point_value: &'static str,
    /// Tiers by name and qualifying points over the window, ascending from 0.
    #[serde(serialize_with = "tiers_as_objects")]
    pub tiers: &'static [(&'static str, u64)],
}

/// Tiers as `[{"name", "threshold"}]`, the shape of `PUT /v1/policy/tiers`.
fn tiers_as_objects<S: serde::Serializer>(
    tiers: &&'static [(&'static str, u64)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(tiers.len()))?;
    for (name, threshold) in tiers.iter() {
        seq.serialize_element(&serde_json::json!({"name": name, "threshold": threshold}))?;
    }
    seq.end()
}

/// The airline: miles in EUR.
pub const AIRLINE: BrandSpec = BrandSpec {
    brand: "airline",
    kind: "airline",
    name: "Skyline Air",
    points: "miles",
    currency: "EUR",
    point_value: "0.01",
    tiers: &[("blue", 0), ("silver", 2000), ("gold", 5000)],
};
/// The coffee chain: beans in EUR.
pub const COFFEE: BrandSpec = BrandSpec {
    brand: "coffee",
    kind: "coffee chain",
    name: "Bean & Leaf",
    points: "beans",
    currency: "EUR",
    point_value: "0.05",
    tiers: &[("green", 0), ("gold", 150)],
};
/// The gym: reps in USD (the one brand in another currency).
pub const GYM: BrandSpec = BrandSpec {
    brand: "gym",
    kind: "gym",
    name: "Iron Gym",
    points: "reps",
    currency: "USD",
    point_value: "0.02",
    tiers: &[("member", 0), ("plus", 400), ("elite", 1000)],
};
/// The three brands, in the order they start.
pub const BRANDS: [&BrandSpec; 3] = [&AIRLINE, &COFFEE, &GYM];

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The UTC calendar date and time of `secs` since the Unix epoch: (year, month, day, hour,
/// minute, second), by H. Hinnant's `civil_from_days`.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYYMMDD-HHMMSS` in UTC for a time in seconds since the Unix epoch.
fn utc_stamp(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// `YYYY-MM-DD` in UTC for a time in ms since the Unix epoch.
pub fn utc_date(ms: u64) -> String {
    let (y, mo, d, ..) = civil(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02}")
}

/// `HH:MM:SS` in UTC for a time in ms since the Unix epoch.
pub fn utc_time(ms: u64) -> String {
    let (.., h, mi, s) = civil(ms / 1000);
    format!("{h:02}:{mi:02}:{s:02}")
}

/// The demo's directory, absolute: `dir` or `./loyalty-demo-<UTC time>`, which must not hold
/// anything yet.
fn prepare_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = dir
        .unwrap_or_else(|| PathBuf::from(format!("loyalty-demo-{}", utc_stamp(now_ms() / 1000))));
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: the demo starts new nodes, so give it a new directory (--dir)",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))
}

/// The demo's nodes, in [`BRANDS`] order once started.
pub struct Federation {
    /// The demo's directory (absolute).
    pub dir: PathBuf,
    pub nodes: Vec<DemoNode>,
    exe: PathBuf,
}

impl Federation {
    /// `init`s and starts one node per brand of [`BRANDS`] on free ports.
    pub async fn start(&mut self) -> Result<()> {
        let mut ports = Vec::new();
        for spec in BRANDS {
            let port = process::free_port(&ports)?;
            ports.push(port);
            let mut node = DemoNode::init(&self.exe, &self.dir, spec, port)?;
            node.start(None).await?;
            self.nodes.push(node);
        }
        Ok(())
    }

    /// The node of `spec`.
    pub fn node(&self, spec: &BrandSpec) -> &DemoNode {
        self.nodes
            .iter()
            .find(|n| n.brand() == spec.brand)
            .expect("every brand is started in step 1")
    }

    /// The node of brand `brand`.
    pub fn node_of(&self, brand: &str) -> Result<&DemoNode> {
        self.nodes
            .iter()
            .find(|n| n.brand() == brand)
            .ok_or_else(|| anyhow!("no demo node for brand {brand}"))
    }

    /// The node of `spec`, to restart it.
    pub fn node_mut(&mut self, spec: &BrandSpec) -> &mut DemoNode {
        self.nodes
            .iter_mut()
            .find(|n| n.brand() == spec.brand)
            .expect("every brand is started in step 1")
    }

    /// Stops every running node (SIGTERM); reports the first failure after trying all.
    pub async fn stop_all(&mut self) -> Result<()> {
        let mut first = None;
        for n in &mut self.nodes {
            if let Err(e) = n.stop().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Entry point of `loyalty-node demo`.
pub fn main(opts: DemoOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(run(opts))
}

async fn run(opts: DemoOptions) -> Result<()> {
    let started = Instant::now();
    let dir = prepare_dir(opts.dir)?;
    let exe = std::env::current_exe().context("find this program's path")?;
    let mut fed = Federation {
        dir: dir.clone(),
        nodes: Vec::new(),
        exe,
    };
    println!("loyalty-node demo: three brands on this machine, and a day of their federation.");
    println!(
        "It takes under a minute; Ctrl-C stops it. Data and node logs: {}",
        dir.display()
    );
    println!(
        "URLs under /v1 need an API key as a bearer token: the admin keys are printed at the end."
    );
    let outcome = tokio::select! {
        r = scenario::run(&mut fed) => Some(r),
        () = shutdown_signal() => None,
    };
    let report = match outcome {
        Some(Ok(report)) => report,
        Some(Err(e)) => {
            println!("\nThe demo stopped: a step did not go as expected (details below).");
            println!("Node logs: {}/<brand>.log", dir.display());
            let _ = fed.stop_all().await;
            return Err(e);
        }
        None => {
            println!("\nInterrupted: stopping the nodes.");
            fed.stop_all().await?;
            bail!(
                "interrupted during the scenario; the data is in {}",
                dir.display()
            );
        }
    };
    let scenario_s = started.elapsed().as_secs_f64();
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("write the report {}", path.display()))?;
    }
    report::explore(&fed, &report);
    println!("\nScenario done in {scenario_s:.1} s.");
    if let Some(path) = &opts.report {
        println!("Report: {}", path.display());
    }
    if opts.exit_after_scenario {
        fed.stop_all().await?;
        println!(
            "Nodes stopped (--exit-after-scenario). Their data stays in {}.",
            dir.display()
        );
        println!(
            "Start one again with: loyalty-node run --data {}",
            dir.join("<brand>").display()
        );
        return Ok(());
    }
    println!("The nodes keep running. Press Ctrl-C to stop them (the data stays).");
    watch_until_signal(&mut fed).await;
    println!("\nStopping the nodes (SIGTERM)...");
    fed.stop_all().await?;
    println!(
        "Stopped. The data stays in {}; start a node again with:",
        dir.display()
    );
    println!(
        "  loyalty-node run --data {}",
        dir.join("<brand>").display()
    );
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, telling the user if a node exits meanwhile.
async fn watch_until_signal(fed: &mut Federation) {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for n in &mut fed.nodes {
                    if let Ok(Some(status)) = n.exited() {
                        println!(
                            "note: {} exited ({status}); see {}",
                            n.brand(),
                            n.log_path().display()
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_stamp(951_827_696), "20000229-123456");
        // 2026-11-24 16:45:00 UTC.
        assert_eq!(utc_stamp(1_795_538_700), "20261124-164500");
        assert_eq!(utc_date(1_795_538_700_123), "2026-11-24");
        assert_eq!(utc_time(1_795_538_700_123), "16:45:00");
    }

    #[test]
    fn a_directory_with_something_in_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let e = prepare_dir(Some(dir.path().to_owned())).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        let empty = dir.path().join("new");
        assert!(prepare_dir(Some(empty.clone())).unwrap().is_absolute());
        assert!(empty.is_dir());
    }

    #[test]
    fn brands_have_valid_ids_currencies_and_tiers() {
        for b in BRANDS {
            b.brand.parse::<ledger::types::BrandId>().unwrap();
            b.currency.parse::<ledger::money::Currency>().unwrap();
            b.point_value.parse::<ledger::money::Decimal>().unwrap();
            assert_eq!(
                b.tiers[0].1, 0,
                "{}: the base tier has threshold 0",
                b.brand
            );
            assert!(b.tiers.windows(2).all(|w| w[0].1 < w[1].1));
        }
    }
}
