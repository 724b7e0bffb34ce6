//! The RocksDB storage of the open loyalty ledger, under the pure `ledger` core (which does
//! no I/O): the store ([`store`]: entries, tree hashes and state records in column families),
//! the durable, signed log a node appends to ([`log`]), and the verified mirror of a
//! partner's log ([`mirror`]). See docs/architecture.md.

pub mod log;
pub mod mirror;
pub mod store;
