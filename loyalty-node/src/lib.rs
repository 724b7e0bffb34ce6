//! The `loyalty-node` binary's own code: the node's command line comes from [`node::cli`]; this
//! crate adds [`demo`] (`loyalty-node demo`, three brands and a narrated scenario on loopback,
//! driven through the SDK). It keeps the node's library free of the SDK's client and of the
//! demo.

pub mod demo;
