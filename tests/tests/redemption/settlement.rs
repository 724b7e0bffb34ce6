//! Refunds across nodes and co-signed settlement statements between real nodes.

#[allow(unused_imports)]
use super::*;
