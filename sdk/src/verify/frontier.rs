//! The compact form of an RFC 6962 tree that a streaming verifier needs: the roots of the
//! perfect subtrees that make up its leaves, left to right (one per set bit of the size).
//!
//! Invariant: `hashes.len() == size.count_ones()`, and `hashes[k]` is the root of the k-th
//! perfect subtree from the left, the subtrees' sizes being the set bits of `size` from the
//! highest down. Memory is at most 64 hashes whatever the size of the log, and the root of
//! the current size is recomputed from them with at most 63 node hashes.

use ledger::merkle::{empty_root, node_hash, Hash, MerkleError};

/// The right edge of a Merkle tree: enough to append leaves and compute the current root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds a frontier from saved parts; `None` when they do not fit together.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Frontier> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' roots, left to right.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash (`SHA-256(0x00 || entry)`).
    pub fn push(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        if self.size == u64::MAX {
            return Err(MerkleError::TreeFull);
        }
        // Every trailing one bit of the old size is a subtree the new leaf completes.
        let mut merged = leaf;
        let mut bits = self.size;
        while bits & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            merged = node_hash(&left, &merged);
            bits >>= 1;
        }
        self.hashes.push(merged);
        self.size += 1;
        debug_assert_eq!(self.hashes.len(), self.size.count_ones() as usize);
        Ok(())
    }

    /// The RFC 6962 root of the current size.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::merkle::{leaf_hash, MemoryTree};

    #[test]
    fn the_frontier_root_equals_the_full_tree_root_at_every_size() {
        let mut full = MemoryTree::new();
        let mut f = Frontier::new();
        assert_eq!(f.root(), full.root().unwrap());
        for i in 0..300u32 {
            let e = i.to_be_bytes();
            full.push(&e).unwrap();
            f.push(leaf_hash(&e)).unwrap();
            assert_eq!(f.root(), full.root().unwrap(), "size {}", i + 1);
            let again = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            assert_eq!(again, f);
        }
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
    }
}
