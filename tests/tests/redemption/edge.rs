//! Edge cases of cross-brand redemption between real nodes.

#[allow(unused_imports)]
use super::*;
