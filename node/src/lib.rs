//! The brand node: HTTP API, sequencer, API keys, operations (DESIGN §7, §8).
//!
//! Code map (each module's routes are its own `routes()`; [`router`] only composes them):
//! - [`app`]: the shared state every route uses and the request plumbing (JSON bodies, API-key
//!   scopes, path parameters); it knows no route;
//! - [`router`]: composes the routes, the admission and metrics middleware and the body limit;
//! - [`config`]: the typed `config.toml` with environment overrides;
//! - [`datadir`]: the data directory's layout and the signing key; [`control`]: its socket;
//! - [`sequencer`]: the single writer thread and its bounded queue;
//! - [`tiers`]: which tier changes the sequencer logs on its own, and when;
//! - [`api`] (writes), [`reads`], [`admin`], [`log_routes`], [`ops`]: the HTTP routes;
//! - [`views`]: the read model (members, lots, holds, history) the reads and the explorer show;
//! - [`explorer`]: the public, read-only HTML pages under `/explorer`;
//! - [`problem`]: every error's status and stable code, in one place;
//! - [`federation`]: partners, verified mirrors, witnessing, the peer client, evidence; its
//!   routes in [`federation_routes`];
//! - [`redemption`]: cross-brand redemption (agreements, quotes, payee and payer steps,
//!   refunds, statements, reconciliation); what its steps refuse, in [`redemption_error`];
//! - [`keys`]: API keys, stored hashed;
//! - [`metrics`], [`openapi`]: operations;
//! - [`clock`]: the guard that stops writes after a forward jump of the system clock;
//! - [`guard`], [`admission`]: admission of requests (one concurrency limit, sender before
//!   body, deadlines);
//! - [`listener`]: client connections (cap, header and idle deadlines, open-file budget);
//! - [`cli`], [`server`]: the node's command line and server; the `loyalty-node` binary (crate
//!   `loyalty-node`) adds `demo` to this command line; [`ha`]: a standby and failover.
//!
//! Layers, from the bottom: the domain and its state ([`sequencer`], [`federation`], [`keys`],
//! [`clock`], [`admission`], [`config`], [`views`]) know neither [`app`] nor any route; [`app`]
//! holds them; the route modules build on [`app`]; [`router`], [`server`] and [`cli`] sit on
//! top. No two top-level modules import each other, directly or through others
//! (`tests/tests/module_graph.rs`).

pub mod admin;
pub mod admission;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod datadir;
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
pub mod redemption_error;
pub mod router;
pub mod sequencer;
pub mod server;
pub mod tiers;
pub mod views;
