//! The failover campaign (issue 18): one brand on two nodes under coordination ([`pair`]) with
//! a three-member etcd ([`etcd`]), apps reaching the brand through a front that follows the
//! primary ([`front`]), a seeded workload of earns and redeems retried with their ids until
//! acknowledged ([`workload`]), and a checker ([`check`]): every acknowledged write is in the
//! final log at its index with its bytes, each write id appears once, balances equal what was
//! acknowledged, and every checkpoint any node ever served is a prefix of the one final
//! history (no fork).
//!
//! Invariants: every wait is bounded; every process the campaign starts is stopped when it
//! ends, however it ends; every failure message names the seed.

pub mod check;
pub mod etcd;
pub mod front;
pub mod pair;
pub mod workload;

/// A small seeded generator (xorshift64*): the campaign's schedule is a function of its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
