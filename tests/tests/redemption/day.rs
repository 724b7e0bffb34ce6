//! A settlement day of many redemptions in both directions between real nodes.

#[allow(unused_imports)]
use super::*;
