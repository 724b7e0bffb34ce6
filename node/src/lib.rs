//! The brand node: HTTP API, sequencer, API keys, operations (DESIGN §7, §8).
//!
//! Code map:
//! - [`config`]: the typed `config.toml` with environment overrides;
//! - [`sequencer`]: the single writer thread and its bounded queue;
//! - [`tiers`]: which tier changes the sequencer logs on its own, and when;
//! - [`api`], [`reads`], [`admin`], [`log_routes`]: the HTTP routes;
//! - [`explorer`]: the public, read-only HTML pages under `/explorer`;
//! - [`problem`]: every error's status and stable code, in one place;
//! - [`federation`]: partners, verified mirrors, witnessing, peer requests, evidence;
//! - [`keys`]: API keys, stored hashed;
//! - [`metrics`], [`openapi`]: operations;
//! - [`clock`]: the guard that stops writes after a forward jump of the system clock;
//! - [`guard`]: admission of requests (one concurrency limit, sender before body, deadlines);
//! - [`listener`]: client connections (cap, header and idle deadlines, open-file budget);
//! - [`cli`], [`server`]: the `loyalty-node` binary;
//! - [`demo`]: `loyalty-node demo`, three brands and a narrated scenario on loopback.

pub mod admin;
pub mod admission;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod datadir;
pub mod demo;
pub mod explorer;
pub mod fault;
pub mod federation;
pub mod federation_routes;
pub mod guard;
pub mod ha;
pub mod keys;
pub mod listener;
pub mod log_routes;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod reads;
pub mod redemption;
pub mod router;
pub mod sequencer;
pub mod server;
pub mod tiers;
