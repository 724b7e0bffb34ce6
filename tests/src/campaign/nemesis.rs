//! The nemesis: a schedule of faults drawn from the campaign's seed before anything runs, and
//! the two tasks that carry it out while the workload runs.
//!
//! - The **process** track kills a node with SIGKILL and restarts it on the same data after a
//!   pause, or restarts it with its clock skewed (`LOYALTY_CLOCK_SKEW_MS`, ± 5–20 s, inside
//!   the peers' 60 s tolerance) and, some seconds later, with the clock straight again.
//! - The **network** track partitions links one way (one (from, to) proxy) or both ways,
//!   isolates a node, loses only the answers of a link (requests arrive and act), delays
//!   links, or disturbs the apps' way to a node; then heals what it broke.
//!
//! Each track runs its steps one after the other, so a crash can overlap a partition but two
//! actions of one track never overlap. A step starts at its planned offset, or at once when
//! the one before overran (a restart takes as long as it takes).
//!
//! Invariants: the schedule depends on the seed and the duration only; when the deadline
//! passes, every track stops after healing what it broke, and every node is running with its
//! clock straight.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::{Network, BRANDS};
use crate::harness::Node;
use crate::proxy::{DirectionFaults, Faults, Flow};

/// Mixed into the seed for the nemesis's own generator.
const SALT: u64 = 0x6e65_6d65_7369_7321;
/// The environment variable that skews a node's clock (`node::sequencer::CLOCK_SKEW_ENV`).
pub const CLOCK_SKEW_ENV: &str = "LOYALTY_CLOCK_SKEW_MS";
/// Largest clock skew the nemesis gives a node, in ms: well inside the peers' tolerance
/// (`federation.peer_clock_skew_ms`, 60 s).
pub const CLOCK_SKEW_MS_MAX: u64 = 20_000;

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL, then a restart on the same data after `down_ms`.
    Kill { node: usize, down_ms: u64 },
    /// A restart with the clock shifted by `skew_ms`, and after `hold_ms` another with the
    /// clock straight (both by SIGKILL).
    Skew {
        node: usize,
        skew_ms: i64,
        hold_ms: u64,
    },
    /// These (from, to) links get `faults` for `hold_ms`.
    Links {
        what: &'static str,
        links: Vec<(usize, usize)>,
        faults: Faults,
        hold_ms: u64,
    },
    /// The apps' proxy of `node` gets `faults` for `hold_ms`.
    Front {
        what: &'static str,
        node: usize,
        faults: Faults,
        hold_ms: u64,
    },
}

impl Action {
    /// The kind of the action, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill { .. } => "kill",
            Action::Skew { .. } => "clock_skew",
            Action::Links { what, .. } | Action::Front { what, .. } => what,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = |(a, b): &(usize, usize)| format!("{}→{}", BRANDS[*a], BRANDS[*b]);
        match self {
            Action::Kill { node, down_ms } => {
                write!(f, "kill -9 {} (down {down_ms} ms)", BRANDS[*node])
            }
            Action::Skew {
                node,
                skew_ms,
                hold_ms,
            } => write!(
                f,
                "restart {} with its clock {skew_ms:+} ms for {hold_ms} ms",
                BRANDS[*node]
            ),
            Action::Links {
                what,
                links,
                faults,
                hold_ms,
            } => write!(
                f,
                "{what} {}: {faults} for {hold_ms} ms",
                links.iter().map(link).collect::<Vec<_>>().join(" ")
            ),
            Action::Front {
                what,
                node,
                faults,
                hold_ms,
            } => write!(
                f,
                "{what} apps→{}: {faults} for {hold_ms} ms",
                BRANDS[*node]
            ),
        }
    }
}

/// An action and when it is planned, in ms from the workload's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
}

/// Both tracks' steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub process: Vec<Step>,
    pub network: Vec<Step>,
}

impl Schedule {
    /// Draws the schedule for a workload of `duration` from `seed`.
    pub fn generate(seed: u64, duration: Duration) -> Schedule {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ SALT);
        let end = duration.as_millis() as u64;
        let n = BRANDS.len();
        let mut process = Vec::new();
        let mut t = rng.random_range(2_000..5_000);
        while t < end {
            let node = rng.random_range(0..n);
            let action = if rng.random_bool(0.65) {
                Action::Kill {
                    node,
                    down_ms: rng.random_range(200..3_000),
                }
            } else {
                let size = rng.random_range(5_000..=CLOCK_SKEW_MS_MAX) as i64;
                Action::Skew {
                    node,
                    skew_ms: if rng.random_bool(0.5) { size } else { -size },
                    hold_ms: rng.random_range(4_000..15_000),
                }
            };
            // A restart takes a second or two; the plan allows for it.
            let busy = match &action {
                Action::Kill { down_ms, .. } => down_ms + 2_000,
                Action::Skew { hold_ms, .. } => hold_ms + 4_000,
                _ => 0,
            };
            process.push(Step { at_ms: t, action });
            t += busy + rng.random_range(2_000..7_000);
        }
        let mut network = Vec::new();
        let mut t = rng.random_range(1_000..3_000);
        while t < end {
            let hold_ms = rng.random_range(1_000..8_000);
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            let flow = if rng.random_bool(0.5) {
                Flow::Cut
            } else {
                Flow::Drop
            };
            let action = match rng.random_range(0..100) {
                0..25 => Action::Links {
                    what: "partition_one_way",
                    links: vec![(a, b)],
                    faults: Faults::both(flow),
                    hold_ms,
                },
                25..40 => Action::Links {
                    what: "partition_both_ways",
                    links: vec![(a, b), (b, a)],
                    faults: Faults::both(flow),
                    hold_ms,
                },
                40..50 => Action::Links {
                    what: "isolate",
                    links: (0..n)
                        .filter(|&o| o != a)
                        .flat_map(|o| [(a, o), (o, a)])
                        .collect(),
                    faults: Faults::both(flow),
                    hold_ms,
                },
                50..65 => Action::Links {
                    what: "lose_answers",
                    links: vec![(a, b)],
                    faults: Faults {
                        down: DirectionFaults {
                            flow: Flow::Cut,
                            delay_ms: 0,
                        },
                        ..Faults::healed()
                    },
                    hold_ms,
                },
                65..85 => Action::Links {
                    what: "delay",
                    links: if rng.random_bool(0.5) {
                        vec![(a, b)]
                    } else {
                        (0..n)
                            .filter(|&o| o != a)
                            .flat_map(|o| [(a, o), (o, a)])
                            .collect()
                    },
                    faults: Faults::delayed(rng.random_range(50..2_500)),
                    hold_ms,
                },
                85..93 => Action::Front {
                    what: "delay_apps",
                    node: a,
                    faults: Faults::delayed(rng.random_range(50..1_500)),
                    hold_ms: hold_ms / 2,
                },
                _ => Action::Front {
                    what: "lose_app_answers",
                    node: a,
                    faults: Faults {
                        down: DirectionFaults {
                            flow: Flow::Cut,
                            delay_ms: 0,
                        },
                        ..Faults::healed()
                    },
                    hold_ms: hold_ms / 4,
                },
            };
            network.push(Step { at_ms: t, action });
            t += hold_ms + rng.random_range(500..4_000);
        }
        Schedule { process, network }
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.process.len() + self.network.len()
    }

    /// Whether there are no steps at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line per step, by planned time.
    pub fn describe(&self) -> Vec<String> {
        let mut all: Vec<(&str, &Step)> = self
            .process
            .iter()
            .map(|s| ("process", s))
            .chain(self.network.iter().map(|s| ("network", s)))
            .collect();
        all.sort_by_key(|(_, s)| s.at_ms);
        all.iter()
            .map(|(track, s)| format!("{:>7} ms {track}: {}", s.at_ms, s.action))
            .collect()
    }
}

/// Runs both tracks until `deadline`; returns the nodes (all running, clocks straight) and how
/// many actions of each kind were carried out.
pub async fn run(
    schedule: Schedule,
    nodes: Vec<Node>,
    net: Arc<Network>,
    t0: Instant,
    deadline: Instant,
) -> (Vec<Node>, BTreeMap<&'static str, u64>) {
    let network = tokio::spawn(network_track(schedule.network, net.clone(), t0, deadline));
    let (nodes, mut done) = process_track(schedule.process, nodes, t0, deadline).await;
    let net_done = network
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    for (k, v) in net_done {
        *done.entry(k).or_default() += v;
    }
    net.heal_all();
    (nodes, done)
}

/// Sleeps until `at`, but not past `deadline`; says whether `deadline` has passed.
async fn sleep_until_or_deadline(at: Instant, deadline: Instant) -> bool {
    tokio::time::sleep_until(at.min(deadline).into()).await;
    Instant::now() >= deadline
}

async fn process_track(
    steps: Vec<Step>,
    mut nodes: Vec<Node>,
    t0: Instant,
    deadline: Instant,
) -> (Vec<Node>, BTreeMap<&'static str, u64>) {
    let mut done = BTreeMap::new();
    for step in steps {
        if sleep_until_or_deadline(t0 + Duration::from_millis(step.at_ms), deadline).await {
            break;
        }
        println!(
            "nemesis {:>7} ms: {}",
            t0.elapsed().as_millis(),
            step.action
        );
        match step.action {
            Action::Kill { node, down_ms } => {
                nodes[node].kill9();
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                nodes[node].start().await;
            }
            Action::Skew {
                node,
                skew_ms,
                hold_ms,
            } => {
                let n = &mut nodes[node];
                n.kill9();
                n.set_env(CLOCK_SKEW_ENV, Some(&skew_ms.to_string()));
                n.start().await;
                sleep_until_or_deadline(Instant::now() + Duration::from_millis(hold_ms), deadline)
                    .await;
                n.kill9();
                n.set_env(CLOCK_SKEW_ENV, None);
                n.start().await;
            }
            Action::Links { .. } | Action::Front { .. } => unreachable!("a network action"),
        }
        *done.entry(step.action.kind()).or_default() += 1;
    }
    (nodes, done)
}

async fn network_track(
    steps: Vec<Step>,
    net: Arc<Network>,
    t0: Instant,
    deadline: Instant,
) -> BTreeMap<&'static str, u64> {
    let mut done = BTreeMap::new();
    for step in steps {
        if sleep_until_or_deadline(t0 + Duration::from_millis(step.at_ms), deadline).await {
            break;
        }
        println!(
            "nemesis {:>7} ms: {}",
            t0.elapsed().as_millis(),
            step.action
        );
        let (proxies, faults, hold_ms) = match &step.action {
            Action::Links {
                links,
                faults,
                hold_ms,
                ..
            } => (
                links.iter().map(|l| &net.links[l]).collect::<Vec<_>>(),
                *faults,
                *hold_ms,
            ),
            Action::Front {
                node,
                faults,
                hold_ms,
                ..
            } => (vec![&net.fronts[*node]], *faults, *hold_ms),
            Action::Kill { .. } | Action::Skew { .. } => unreachable!("a process action"),
        };
        for p in &proxies {
            p.set(faults);
        }
        sleep_until_or_deadline(Instant::now() + Duration::from_millis(hold_ms), deadline).await;
        for p in &proxies {
            p.heal();
        }
        *done.entry(step.action.kind()).or_default() += 1;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule() {
        let a = Schedule::generate(7, Duration::from_secs(60));
        let b = Schedule::generate(7, Duration::from_secs(60));
        let c = Schedule::generate(8, Duration::from_secs(60));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.process.len() >= 3 && a.network.len() >= 5,
            "{:?}",
            a.describe()
        );
        for s in a.process.iter().chain(&a.network) {
            assert!(s.at_ms < 60_000);
            if let Action::Skew { skew_ms, .. } = s.action {
                assert!(skew_ms.unsigned_abs() <= CLOCK_SKEW_MS_MAX);
            }
        }
    }
}
