//! Multi-node tests of the federation protocol (spec/federation.md).
//!
//! - [`harness`]: real `loyalty-node` processes on loopback (ports, data directories, admin
//!   keys, kill -9 and restart with the same data, clean-up on drop), partner pinning, JSON
//!   helpers for the federation routes, and waiting with deadlines.
//! - [`fake_partner`]: an in-process partner node built from the pure `ledger` crate that
//!   serves exactly what a node's sync client reads, can switch at run time between an honest
//!   log and each misbehaviour a node must catch, and sends signed peer requests (§2).
//! - [`browser`]: a headless Chromium driven through chromedriver (W3C WebDriver), for the
//!   explorer's browser test (`tests/explorer.rs`), with screenshots as test artifacts.
//! - [`proxy`]: a fault-injecting TCP proxy (delay, cut, drop, per direction) to put between
//!   nodes, one per (from, to) pair, so partitions can be one-way and per pair.
//! - [`campaign`]: the fault campaign: three nodes behind proxies, a seeded workload and
//!   nemesis, and a bank-style checker (run by `tests/campaign.rs`; README, "Fault campaign").
//!
//! The tests themselves are in `tests/*.rs`. Build and run them through the workspace only
//! (`cargo test --workspace --test federation`): building this crate alone unifies features
//! differently and rebuilds RocksDB's C++.

pub mod browser;
pub mod campaign;
pub mod failover;
pub mod fake_partner;
pub mod harness;
pub mod proxy;
pub mod redemption;
