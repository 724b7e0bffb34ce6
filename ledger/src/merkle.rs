//! RFC 6962 / RFC 9162 (section 2.1) Merkle tree over the ledger's log entries.
//!
//! The tree is never rebuilt. Storage keeps the hash of every *complete* (perfect)
//! subtree, addressed by `(level, index)`: the subtree at `(level, index)` covers the
//! leaves `[index * 2^level, (index + 1) * 2^level)`, so level 0 holds the leaf hashes.
//! Everything else is derived from those stored hashes with O(log n) reads:
//!
//! * Appending leaf number `size` completes exactly the subtrees returned by
//!   [`append_leaf`]; they never change afterwards (the log is append-only).
//! * The tree head of any prefix `size` is the right fold of the perfect subtrees of the
//!   binary decomposition of `size` ([`root`]).
//! * `MTH(D[a:b])` for every range the RFC recursion visits is such a fold too, because
//!   that recursion only visits ranges whose start is a multiple of the smallest power
//!   of two that is at least `b - a` ([`subtree_hash_range`]).
//! * [`inclusion_proof`] and [`consistency_proof`] return exactly the RFC 6962 `PATH`
//!   and `PROOF` lists; [`verify_inclusion`] and [`verify_consistency`] are the RFC 9162
//!   section 2.1.3.2 and 2.1.4.2 verifiers and need no storage.
//!
//! Invalid arguments are reported as [`MerkleError`] values; no function here panics on
//! input. A [`HashReader`] is only asked for subtrees complete within the tree size the
//! caller passes; asking for a size beyond what the storage holds surfaces as the
//! reader's own error (for example [`MerkleError::MissingHash`]).

use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Reads hashes of *complete* subtrees from storage.
///
/// `subtree_hash(level, index)` is MTH(D[index * 2^level .. (index + 1) * 2^level]),
/// the hash of a perfect subtree of 2^level leaves. It is only asked for subtrees that
/// are complete in the tree size the caller works with.
pub trait HashReader {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError>;
}

/// Errors of the Merkle module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("hash at level {level} index {index} is missing from storage")]
    MissingHash { level: u8, index: u64 },
    #[error("storage error: {0}")]
    Storage(String),
    /// A leaf index is not smaller than the tree size it is meant to be part of.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A leaf range `[start, end)` is empty or is not one the RFC recursion can visit.
    #[error("invalid leaf range [{start}, {end})")]
    InvalidRange { start: u64, end: u64 },
    /// A consistency proof was asked or checked for `old > new`, or for `old == 0`.
    #[error("invalid consistency range: old size {old}, new size {new}")]
    InvalidConsistencyRange { old: u64, new: u64 },
    /// A tree size exceeds the number of leaves the tree holds.
    #[error("tree size {size} exceeds the {available} leaves available")]
    SizeBeyondTree { size: u64, available: u64 },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    TreeFull,
    /// A proof has the wrong number of hashes for its sizes (malformed input).
    #[error("proof has {actual} hashes, expected {expected}")]
    InvalidProofLength { expected: usize, actual: usize },
    /// A well-formed proof does not lead to the given root(s).
    #[error("proof does not verify against the given root")]
    ProofMismatch,
}

/// Returns the RFC 6962 leaf hash `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// Returns the RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Returns the tree head of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// Returns the largest power of two strictly smaller than `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Returns the number of bits needed so that `2^bits >= n`, for `n >= 1`.
fn ceil_log2(n: u64) -> u32 {
    64 - (n - 1).leading_zeros()
}

/// Returns the subtree hashes that become complete when leaf number `size` (0-based)
/// is appended to a tree of `size` leaves, as `(level, index, hash)` in increasing level.
///
/// The first element is always `(0, size, leaf)`. Each following element combines the
/// previous one with its left sibling, read from `reader`, while the index at the
/// current level is odd. The caller must store every returned hash; nothing else
/// changes. At most `log2(size + 1)` reads are made.
pub fn append_leaf(
    size: u64,
    leaf: Hash,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<(u8, u64, Hash)>, MerkleError> {
    if size == u64::MAX {
        return Err(MerkleError::TreeFull);
    }
    let mut writes = vec![(0u8, size, leaf)];
    let (mut level, mut index, mut hash) = (0u8, size, leaf);
    while index & 1 == 1 {
        let sibling = reader.subtree_hash(level, index - 1)?;
        hash = node_hash(&sibling, &hash);
        level += 1;
        index >>= 1;
        writes.push((level, index, hash));
    }
    Ok(writes)
}

/// Returns `MTH(D[start:end])` from stored perfect-subtree hashes.
///
/// The range must be non-empty and `start` must be a multiple of the smallest power of
/// two that is at least `end - start` (every range visited by the RFC 6962 `MTH`,
/// `PATH` and `PROOF` recursions has this shape, and so does `[0, size)`); otherwise
/// [`MerkleError::InvalidRange`] is returned. Such a range is tiled by the perfect
/// subtrees of the binary decomposition of its length, so exactly
/// `popcount(end - start)` hashes are read.
pub fn subtree_hash_range(
    start: u64,
    end: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Hash, MerkleError> {
    if end <= start || (start != 0 && start.trailing_zeros() < ceil_log2(end - start)) {
        return Err(MerkleError::InvalidRange { start, end });
    }
    let len = end - start;
    // The tiles are folded from the smallest (rightmost) one towards the largest, because
    // MTH splits off the largest power of two on the left and recurses on the right.
    let mut acc: Option<Hash> = None;
    let mut tile_end = end;
    for level in 0..64u8 {
        if len & (1u64 << level) == 0 {
            continue;
        }
        let tile_start = tile_end - (1u64 << level);
        let tile = reader.subtree_hash(level, tile_start >> level)?;
        acc = Some(match acc {
            None => tile,
            Some(right) => node_hash(&tile, &right),
        });
        tile_end = tile_start;
    }
    acc.ok_or(MerkleError::InvalidRange { start, end })
}

/// Returns the tree head `MTH(D[0:size])` of the first `size` leaves.
///
/// The empty tree has head [`empty_root`]. Exactly `popcount(size)` hashes are read.
pub fn root(size: u64, reader: &(impl HashReader + ?Sized)) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash_range(0, size, reader)
}

/// Returns the leaf ranges whose hashes form `PATH(index, D[0:size])`, deepest first.
fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut start, mut end) = (0u64, size);
    let mut ranges = Vec::new();
    // Walking down from the root records the sibling of every node on the leaf's path;
    // the RFC lists them from the leaf upwards, hence the final reversal.
    while end - start > 1 {
        let mid = start + split_point(end - start);
        if index < mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((start, mid));
            start = mid;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// Returns the leaf ranges whose hashes form `PROOF(old, D[0:new])`, in RFC order.
fn consistency_ranges(old: u64, new: u64) -> Result<Vec<(u64, u64)>, MerkleError> {
    if old == 0 || old > new {
        return Err(MerkleError::InvalidConsistencyRange { old, new });
    }
    let (mut start, mut end) = (0u64, new);
    let mut whole_old_tree = true;
    let mut ranges = Vec::new();
    // This is SUBPROOF(old - start, D[start:end], whole_old_tree) unrolled: every step
    // appends one hash after the recursive part, so the list is built backwards.
    while old != end {
        let mid = start + split_point(end - start);
        if old <= mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((start, mid));
            start = mid;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        ranges.push((start, end));
    }
    ranges.reverse();
    Ok(ranges)
}

/// Returns the RFC 6962 inclusion proof `PATH(index, D[0:size])`, deepest sibling first.
///
/// Fails with [`MerkleError::IndexOutOfRange`] when `index >= size`. At most about
/// `2 * log2(size)` hashes are read, because only the first sibling taken to the right
/// of the path can be a non-perfect range.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, MerkleError> {
    inclusion_ranges(index, size)?
        .into_iter()
        .map(|(start, end)| subtree_hash_range(start, end, reader))
        .collect()
}

/// Returns the RFC 6962 consistency proof `PROOF(old, D[0:new])`.
///
/// The proof is empty when `old == new`. Fails with
/// [`MerkleError::InvalidConsistencyRange`] when `old == 0` or `old > new`. At most
/// about `2 * log2(new)` hashes are read.
pub fn consistency_proof(
    old: u64,
    new: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, MerkleError> {
    consistency_ranges(old, new)?
        .into_iter()
        .map(|(start, end)| subtree_hash_range(start, end, reader))
        .collect()
}

/// Checks the length of `proof` against the length the sizes require.
fn check_len(expected: usize, proof: &[Hash]) -> Result<(), MerkleError> {
    if proof.len() == expected {
        Ok(())
    } else {
        Err(MerkleError::InvalidProofLength {
            expected,
            actual: proof.len(),
        })
    }
}

/// Verifies that `leaf` (a leaf hash) is leaf number `index` of the tree of `size`
/// leaves whose head is `root`, following RFC 9162 section 2.1.3.2.
///
/// Returns [`MerkleError::IndexOutOfRange`] when `index >= size`,
/// [`MerkleError::InvalidProofLength`] when the proof length does not match
/// `(index, size)`, and [`MerkleError::ProofMismatch`] when the recomputed head differs
/// from `root`. As in the RFC, the proof binds `root`, not `size`: when two sizes give
/// the same path shape, one proof verifies for both against the same root, so callers
/// must take `size` from the same signed checkpoint as `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    check_len(inclusion_ranges(index, size)?.len(), proof)?;
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(MerkleError::ProofMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && r == *root {
        Ok(())
    } else {
        Err(MerkleError::ProofMismatch)
    }
}

/// Verifies that the tree of `new` leaves with head `new_root` extends the tree of
/// `old` leaves with head `old_root`, following RFC 9162 section 2.1.4.2.
///
/// Edge cases: `old > new` is [`MerkleError::InvalidConsistencyRange`]; `old == 0`
/// needs an empty proof and `old_root == empty_root()`; `old == new` needs an empty
/// proof and equal roots. A proof of the wrong length is
/// [`MerkleError::InvalidProofLength`]; a well-formed proof that does not reproduce
/// both roots is [`MerkleError::ProofMismatch`]. As in the RFC, the proof binds both
/// roots and `old`, but not `new`: callers must take `new` from the same signed
/// checkpoint as `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old > new {
        return Err(MerkleError::InvalidConsistencyRange { old, new });
    }
    if old == 0 || old == new {
        check_len(0, proof)?;
        let old_ok = if old == 0 {
            *old_root == empty_root() && (new != 0 || *new_root == empty_root())
        } else {
            old_root == new_root
        };
        return if old_ok {
            Ok(())
        } else {
            Err(MerkleError::ProofMismatch)
        };
    }
    check_len(consistency_ranges(old, new)?.len(), proof)?;
    // When `old` is a power of two the old tree is itself a node of the new tree, so
    // the RFC prepends its head to the path.
    let mut path = proof.iter();
    let first = if old.is_power_of_two() {
        *old_root
    } else {
        *path.next().ok_or(MerkleError::ProofMismatch)?
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in path {
        if snode == 0 {
            return Err(MerkleError::ProofMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(MerkleError::ProofMismatch)
    }
}

/// Hashes appended in memory on top of a [`HashReader`], so that a batch of leaves can
/// be appended before anything is written.
///
/// Reads see the pending hashes first and fall back to the underlying reader. After
/// any number of [`PendingHashes::push`] calls, storing [`PendingHashes::into_writes`]
/// leaves storage exactly as if [`append_leaf`] had been applied leaf by leaf.
pub struct PendingHashes<'a, R: HashReader + ?Sized> {
    reader: &'a R,
    size: u64,
    overlay: HashMap<(u8, u64), Hash>,
    writes: Vec<(u8, u64, Hash)>,
}

impl<'a, R: HashReader + ?Sized> PendingHashes<'a, R> {
    /// Starts a batch on top of `reader`, which holds a tree of `size` leaves.
    pub fn new(reader: &'a R, size: u64) -> Self {
        Self {
            reader,
            size,
            overlay: HashMap::new(),
            writes: Vec::new(),
        }
    }

    /// Appends a leaf hash; on error nothing is changed.
    pub fn push(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        let writes = append_leaf(self.size, leaf, self)?;
        for &(level, index, hash) in &writes {
            self.overlay.insert((level, index), hash);
        }
        self.writes.extend(writes);
        self.size += 1;
        Ok(())
    }

    /// Appends the leaf hash of `entry`; on error nothing is changed.
    pub fn push_entry(&mut self, entry: &[u8]) -> Result<(), MerkleError> {
        self.push(leaf_hash(entry))
    }

    /// Returns the tree size including the pending leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the tree head including the pending leaves.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.size, self)
    }

    /// Returns every pending `(level, index, hash)` in the order it became complete.
    pub fn into_writes(self) -> Vec<(u8, u64, Hash)> {
        self.writes
    }
}

impl<R: HashReader + ?Sized> HashReader for PendingHashes<'_, R> {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        match self.overlay.get(&(level, index)) {
            Some(hash) => Ok(*hash),
            None => self.reader.subtree_hash(level, index),
        }
    }
}

/// An in-memory tree that stores every complete subtree hash, level by level.
///
/// `levels[l][i]` is the hash at `(l, i)`; a level holds exactly the complete subtrees of
/// the current size. Roots and proofs go through the same O(log n) functions as any
/// other [`HashReader`], and may be asked for any prefix size up to [`MemoryTree::size`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Returns an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the leaf hash of `entry` and returns its leaf index.
    pub fn push(&mut self, entry: &[u8]) -> Result<u64, MerkleError> {
        self.push_leaf_hash(leaf_hash(entry))
    }

    /// Appends an already computed leaf hash and returns its leaf index.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        let index = self.size();
        for (level, _, hash) in append_leaf(index, leaf, self)? {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            // Subtrees complete in increasing index order, so each one is the next
            // element of its level.
            if let Some(stored) = self.levels.get_mut(level) {
                stored.push(hash);
            }
        }
        Ok(index)
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Returns the current tree head.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.size(), self)
    }

    /// Returns the tree head of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        root(size, self)
    }

    /// Returns the inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        inclusion_proof(index, size, self)
    }

    /// Returns the consistency proof between the first `old` and first `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(new)?;
        consistency_proof(old, new, self)
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        if size > self.size() {
            Err(MerkleError::SizeBeyondTree {
                size,
                available: self.size(),
            })
        } else {
            Ok(())
        }
    }
}

impl HashReader for MemoryTree {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MerkleError::MissingHash { level, index })
    }
}

/// Test vectors for `spec/vectors/merkle.json`; see `spec/merkle.md` for the format.
pub mod vectors {
    use super::{
        empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MemoryTree,
        MerkleError,
    };
    use serde::{Deserialize, Serialize};

    /// The largest tree size of the generated sequence cases.
    pub const MAX_SEQUENCE_SIZE: u64 = 33;

    /// The leaves of the certificate-transparency reference tests, in hex.
    pub const CT_REFERENCE_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    // Fields are declared in alphabetical order so that the JSON key order is the same
    // whether or not serde_json preserves insertion order.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        consistency: Vec<Consistency>,
        inclusion: Vec<Inclusion>,
        leaves: Vec<String>,
        root: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inclusion {
        index: u64,
        proof: Vec<String>,
        size: u64,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Consistency {
        new: u64,
        old: u64,
        proof: Vec<String>,
    }

    /// Returns leaf `i` of the deterministic sequence: the ASCII bytes of `leaf-{i}`.
    pub fn sequence_leaf(i: u64) -> Vec<u8> {
        format!("leaf-{i}").into_bytes()
    }

    fn hex_list(hashes: &[Hash]) -> Vec<String> {
        hashes.iter().map(hex::encode).collect()
    }

    /// Builds one case: inclusion proofs for every index of every size in `sizes`, and
    /// consistency proofs for every `0 <= old <= new` with `new` in `sizes`.
    fn case(leaves: &[Vec<u8>], sizes: &[u64]) -> Result<Case, MerkleError> {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push(leaf)?;
        }
        let mut inclusion = Vec::new();
        let mut consistency = Vec::new();
        for &size in sizes {
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size)?;
                inclusion.push(Inclusion {
                    index,
                    proof: hex_list(&proof),
                    size,
                });
            }
            for old in 0..=size {
                let proof = if old == 0 {
                    Vec::new()
                } else {
                    tree.consistency_proof(old, size)?
                };
                consistency.push(Consistency {
                    new: size,
                    old,
                    proof: hex_list(&proof),
                });
            }
        }
        Ok(Case {
            consistency,
            inclusion,
            leaves: leaves.iter().map(hex::encode).collect(),
            root: hex::encode(tree.root()?),
        })
    }

    fn build() -> Result<serde_json::Value, String> {
        let mut cases = Vec::new();
        for n in 0..=MAX_SEQUENCE_SIZE {
            let leaves: Vec<Vec<u8>> = (0..n).map(sequence_leaf).collect();
            cases.push(case(&leaves, &[n]).map_err(|e| e.to_string())?);
        }
        let ct: Vec<Vec<u8>> = CT_REFERENCE_LEAVES
            .iter()
            .map(hex::decode)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let sizes: Vec<u64> = (1..=ct.len() as u64).collect();
        cases.push(case(&ct, &sizes).map_err(|e| e.to_string())?);
        serde_json::to_value(cases).map_err(|e| e.to_string())
    }

    /// Returns the vector document: one case per sequence size 0 to
    /// [`MAX_SEQUENCE_SIZE`], then the 8-leaf certificate-transparency reference case
    /// with proofs for every size 1 to 8. Generation from fixed inputs cannot fail; if
    /// it ever did, the error text is returned as a JSON string, which [`check`] rejects.
    pub fn generate() -> serde_json::Value {
        build().unwrap_or_else(serde_json::Value::String)
    }

    fn decode_hash(text: &str) -> Result<Hash, String> {
        let bytes = hex::decode(text).map_err(|e| format!("bad hex {text:?}: {e}"))?;
        Hash::try_from(bytes.as_slice()).map_err(|_| format!("not a 32-byte hash: {text:?}"))
    }

    fn decode_proof(texts: &[String]) -> Result<Vec<Hash>, String> {
        texts.iter().map(|t| decode_hash(t)).collect()
    }

    /// Computes `MTH(D[0:n])` straight from the leaf hashes by the RFC recursion,
    /// independently of the stored-subtree code.
    fn direct_root(leaves: &[Hash]) -> Hash {
        match leaves {
            [] => empty_root(),
            [leaf] => *leaf,
            _ => {
                let k = super::split_point(leaves.len() as u64) as usize;
                let (left, right) = leaves.split_at(k);
                node_hash(&direct_root(left), &direct_root(right))
            }
        }
    }

    fn prefix_root(leaves: &[Hash], size: u64) -> Result<Hash, String> {
        usize::try_from(size)
            .ok()
            .and_then(|n| leaves.get(..n))
            .map(direct_root)
            .ok_or_else(|| format!("size {size} exceeds the {} leaves", leaves.len()))
    }

    /// Checks a vector document: every case's root is recomputed from its leaves, and
    /// every inclusion and consistency proof is verified with [`verify_inclusion`] and
    /// [`verify_consistency`] against roots recomputed from the leaves. Returns a
    /// description of the first failure.
    pub fn check(doc: &serde_json::Value) -> Result<(), String> {
        let cases = Vec::<Case>::deserialize(doc).map_err(|e| format!("bad document: {e}"))?;
        for (c, case) in cases.iter().enumerate() {
            let leaves: Vec<Hash> = case
                .leaves
                .iter()
                .map(|l| hex::decode(l).map(|bytes| leaf_hash(&bytes)))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("case {c}: bad leaf hex: {e}"))?;
            if direct_root(&leaves) != decode_hash(&case.root)? {
                return Err(format!("case {c}: root does not match the leaves"));
            }
            for v in &case.inclusion {
                let root = prefix_root(&leaves, v.size)?;
                let leaf = usize::try_from(v.index)
                    .ok()
                    .and_then(|i| leaves.get(i))
                    .ok_or_else(|| format!("case {c}: index {} has no leaf", v.index))?;
                verify_inclusion(leaf, v.index, v.size, &decode_proof(&v.proof)?, &root)
                    .map_err(|e| format!("case {c}: inclusion {}/{}: {e}", v.index, v.size))?;
            }
            for v in &case.consistency {
                let (old_root, new_root) =
                    (prefix_root(&leaves, v.old)?, prefix_root(&leaves, v.new)?);
                verify_consistency(v.old, v.new, &old_root, &new_root, &decode_proof(&v.proof)?)
                    .map_err(|e| format!("case {c}: consistency {}/{}: {e}", v.old, v.new))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::sync::OnceLock;

    /// The recursive RFC 6962 definitions, computed straight from the leaf hashes.
    mod reference {
        use super::super::{empty_root, node_hash, split_point, Hash};

        pub fn mth(leaves: &[Hash]) -> Hash {
            match leaves {
                [] => empty_root(),
                [leaf] => *leaf,
                _ => {
                    let (left, right) = leaves.split_at(split_point(leaves.len() as u64) as usize);
                    node_hash(&mth(left), &mth(right))
                }
            }
        }

        pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
            if leaves.len() <= 1 {
                return Vec::new();
            }
            let k = split_point(leaves.len() as u64) as usize;
            let (left, right) = leaves.split_at(k);
            if m < k {
                let mut p = path(m, left);
                p.push(mth(right));
                p
            } else {
                let mut p = path(m - k, right);
                p.push(mth(left));
                p
            }
        }

        pub fn proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
            subproof(m, leaves, true)
        }

        fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
            let n = leaves.len();
            if m == n {
                return if whole { Vec::new() } else { vec![mth(leaves)] };
            }
            let k = split_point(n as u64) as usize;
            let (left, right) = leaves.split_at(k);
            if m <= k {
                let mut p = subproof(m, left, whole);
                p.push(mth(right));
                p
            } else {
                let mut p = subproof(m - k, right, false);
                p.push(mth(left));
                p
            }
        }
    }

    fn h(text: &str) -> Hash {
        Hash::try_from(hex::decode(text).unwrap().as_slice()).unwrap()
    }

    fn ct_tree() -> (MemoryTree, Vec<Hash>) {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for leaf in vectors::CT_REFERENCE_LEAVES {
            let bytes = hex::decode(leaf).unwrap();
            tree.push(&bytes).unwrap();
            leaves.push(leaf_hash(&bytes));
        }
        (tree, leaves)
    }

    fn sequence_tree(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let bytes = vectors::sequence_leaf(i);
            tree.push(&bytes).unwrap();
            leaves.push(leaf_hash(&bytes));
        }
        (tree, leaves)
    }

    /// A tree of 2000 distinct leaves shared by the property tests.
    fn big_tree() -> &'static (MemoryTree, Vec<Hash>) {
        static TREE: OnceLock<(MemoryTree, Vec<Hash>)> = OnceLock::new();
        TREE.get_or_init(|| sequence_tree(2000))
    }

    fn flip(hash: &Hash) -> Hash {
        let mut altered = *hash;
        altered[7] ^= 0x20;
        altered
    }

    /// The side of each inclusion-proof sibling (true when it is on the left).
    fn path_shape(index: u64, size: u64) -> Vec<bool> {
        inclusion_ranges(index, size)
            .unwrap()
            .iter()
            .map(|&(_, end)| end <= index)
            .collect()
    }

    // The known answers of the certificate-transparency reference tests.
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    const CT_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    const CT_CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    #[test]
    fn empty_root_is_sha256_of_empty_string() {
        assert_eq!(
            empty_root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(MemoryTree::new().root().unwrap(), empty_root());
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        assert_eq!(leaf_hash(b""), h(CT_ROOTS[0]));
        let (a, b) = (leaf_hash(b""), leaf_hash(&[0]));
        assert_eq!(node_hash(&a, &b), h(CT_ROOTS[1]));
        assert_ne!(leaf_hash(&[a, b].concat()), node_hash(&a, &b));
    }

    #[test]
    fn roots_match_ct_reference_for_sizes_1_to_8() {
        let (tree, _) = ct_tree();
        for (i, expected) in CT_ROOTS.iter().enumerate() {
            assert_eq!(
                tree.root_at(i as u64 + 1).unwrap(),
                h(expected),
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_ct_reference_and_verify() {
        let (tree, leaves) = ct_tree();
        for (index, size, expected) in CT_INCLUSION {
            let expected: Vec<Hash> = expected.iter().map(|x| h(x)).collect();
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, expected, "index {index} size {size}");
            let root = h(CT_ROOTS[size as usize - 1]);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_ct_reference_and_verify() {
        let (tree, _) = ct_tree();
        for (old, new, expected) in CT_CONSISTENCY {
            let expected: Vec<Hash> = expected.iter().map(|x| h(x)).collect();
            let proof = tree.consistency_proof(old, new).unwrap();
            assert_eq!(proof, expected, "old {old} new {new}");
            let (old_root, new_root) =
                (h(CT_ROOTS[old as usize - 1]), h(CT_ROOTS[new as usize - 1]));
            verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
        }
    }

    #[test]
    fn proofs_match_reference_for_every_size_index_and_pair_up_to_70() {
        let (tree, leaves) = sequence_tree(70);
        for n in 0..=70u64 {
            let prefix = &leaves[..n as usize];
            let head = reference::mth(prefix);
            assert_eq!(root(n, &tree).unwrap(), head, "root of size {n}");
            for m in 0..n {
                let proof = inclusion_proof(m, n, &tree).unwrap();
                assert_eq!(proof, reference::path(m as usize, prefix), "path {m} {n}");
                verify_inclusion(&prefix[m as usize], m, n, &proof, &head).unwrap();
            }
            for m in 1..=n {
                let proof = consistency_proof(m, n, &tree).unwrap();
                assert_eq!(proof, reference::proof(m as usize, prefix), "proof {m} {n}");
                let old_root = reference::mth(&leaves[..m as usize]);
                verify_consistency(m, n, &old_root, &head, &proof).unwrap();
            }
        }
    }

    #[test]
    fn append_leaf_returns_every_newly_completed_subtree() {
        let (tree, _) = sequence_tree(7);
        let leaf = leaf_hash(b"eighth");
        let writes = append_leaf(7, leaf, &tree).unwrap();
        let levels: Vec<(u8, u64)> = writes.iter().map(|&(l, i, _)| (l, i)).collect();
        assert_eq!(levels, vec![(0, 7), (1, 3), (2, 1), (3, 0)]);
        assert_eq!(writes[0].2, leaf);
        let mut grown = tree.clone();
        grown.push(b"eighth").unwrap();
        assert_eq!(writes[3].2, grown.root().unwrap());
        assert_eq!(append_leaf(8, leaf, &grown).unwrap(), vec![(0, 8, leaf)]);
    }

    #[test]
    fn append_leaf_reports_missing_sibling_and_full_tree() {
        let empty = MemoryTree::new();
        assert_eq!(
            append_leaf(1, [0; 32], &empty),
            Err(MerkleError::MissingHash { level: 0, index: 0 })
        );
        assert_eq!(
            append_leaf(u64::MAX, [0; 32], &empty),
            Err(MerkleError::TreeFull)
        );
    }

    /// Storage as a map, the way a database would hold the hashes.
    #[derive(Default)]
    struct MapStore(HashMap<(u8, u64), Hash>);

    impl HashReader for MapStore {
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or(MerkleError::MissingHash { level, index })
        }
    }

    #[test]
    fn pending_hashes_batches_equal_leaf_by_leaf_appends() {
        let (tree, leaves) = sequence_tree(100);
        let mut store = MapStore::default();
        let mut size = 0u64;
        let mut one_by_one = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            one_by_one.extend(append_leaf(i as u64, *leaf, &tree).unwrap());
        }
        let mut batched = Vec::new();
        for batch in leaves.chunks(13) {
            let mut pending = PendingHashes::new(&store, size);
            for leaf in batch {
                pending.push(*leaf).unwrap();
            }
            assert_eq!(pending.size(), size + batch.len() as u64);
            assert_eq!(
                pending.root().unwrap(),
                reference::mth(&leaves[..pending.size() as usize])
            );
            size = pending.size();
            let writes = pending.into_writes();
            batched.extend(writes.iter().copied());
            for (level, index, hash) in writes {
                store.0.insert((level, index), hash);
            }
        }
        assert_eq!(batched, one_by_one);
        assert_eq!(root(100, &store).unwrap(), tree.root().unwrap());
    }

    #[test]
    fn invalid_arguments_are_typed_errors() {
        let (tree, leaves) = sequence_tree(5);
        assert_eq!(
            inclusion_proof(5, 5, &tree),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(0, 0, &tree),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            consistency_proof(4, 3, &tree),
            Err(MerkleError::InvalidConsistencyRange { old: 4, new: 3 })
        );
        assert_eq!(
            consistency_proof(0, 3, &tree),
            Err(MerkleError::InvalidConsistencyRange { old: 0, new: 3 })
        );
        assert_eq!(
            tree.inclusion_proof(0, 6),
            Err(MerkleError::SizeBeyondTree {
                size: 6,
                available: 5
            })
        );
        assert_eq!(
            tree.consistency_proof(2, 9),
            Err(MerkleError::SizeBeyondTree {
                size: 9,
                available: 5
            })
        );
        assert_eq!(
            tree.root_at(6),
            Err(MerkleError::SizeBeyondTree {
                size: 6,
                available: 5
            })
        );
        assert_eq!(
            root(6, &tree),
            Err(MerkleError::MissingHash { level: 1, index: 2 })
        );
        assert!(matches!(
            inclusion_proof(0, 9, &tree),
            Err(MerkleError::MissingHash { .. })
        ));
        assert_eq!(
            subtree_hash_range(1, 3, &tree),
            Err(MerkleError::InvalidRange { start: 1, end: 3 })
        );
        assert_eq!(
            subtree_hash_range(3, 3, &tree),
            Err(MerkleError::InvalidRange { start: 3, end: 3 })
        );
        assert_eq!(subtree_hash_range(4, 5, &tree).unwrap(), leaves[4]);
        assert_eq!(
            verify_inclusion(&leaves[0], 5, 5, &[], &tree.root().unwrap()),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            verify_consistency(4, 3, &[0; 32], &[0; 32], &[]),
            Err(MerkleError::InvalidConsistencyRange { old: 4, new: 3 })
        );
    }

    #[test]
    fn functions_never_panic_at_extreme_sizes() {
        let reader = CountingReader::default();
        assert!(root(u64::MAX, &reader).is_ok());
        assert!(inclusion_proof(u64::MAX - 1, u64::MAX, &reader).is_ok());
        assert!(consistency_proof(u64::MAX - 1, u64::MAX, &reader).is_ok());
        assert!(consistency_proof(1, u64::MAX, &reader).is_ok());
        assert!(subtree_hash_range(1 << 63, u64::MAX, &reader).is_ok());
        assert!(subtree_hash_range(0, u64::MAX, &reader).is_ok());
        assert!(
            verify_inclusion(&[0; 32], u64::MAX - 1, u64::MAX, &[[0; 32]; 64], &[0; 32]).is_err()
        );
        assert!(verify_consistency(1, u64::MAX, &[0; 32], &[0; 32], &[[0; 32]; 64]).is_err());
    }

    #[test]
    fn inclusion_proof_with_wrong_length_is_malformed() {
        let (tree, leaves) = sequence_tree(8);
        let proof = tree.inclusion_proof(3, 8).unwrap();
        let head = tree.root().unwrap();
        assert_eq!(
            verify_inclusion(&leaves[3], 3, 8, &proof[..2], &head),
            Err(MerkleError::InvalidProofLength {
                expected: 3,
                actual: 2
            })
        );
        let mut longer = proof.clone();
        longer.push(head);
        assert_eq!(
            verify_inclusion(&leaves[3], 3, 8, &longer, &head),
            Err(MerkleError::InvalidProofLength {
                expected: 3,
                actual: 4
            })
        );
        assert_eq!(verify_inclusion(&leaves[0], 0, 1, &[], &leaves[0]), Ok(()));
    }

    #[test]
    fn consistency_edge_cases_follow_rfc_9162() {
        let (tree, _) = sequence_tree(8);
        let (r3, r8) = (tree.root_at(3).unwrap(), tree.root().unwrap());
        assert_eq!(verify_consistency(0, 8, &empty_root(), &r8, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &empty_root(), &empty_root(), &[]),
            Ok(())
        );
        assert_eq!(
            verify_consistency(0, 8, &r3, &r8, &[]),
            Err(MerkleError::ProofMismatch)
        );
        assert_eq!(
            verify_consistency(0, 8, &empty_root(), &r8, &[r3]),
            Err(MerkleError::InvalidProofLength {
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(verify_consistency(8, 8, &r8, &r8, &[]), Ok(()));
        assert_eq!(
            verify_consistency(8, 8, &r3, &r8, &[]),
            Err(MerkleError::ProofMismatch)
        );
        assert_eq!(
            verify_consistency(8, 8, &r8, &r8, &[r3]),
            Err(MerkleError::InvalidProofLength {
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(tree.consistency_proof(8, 8), Ok(Vec::new()));
        let proof = tree.consistency_proof(3, 8).unwrap();
        assert_eq!(verify_consistency(3, 8, &r3, &r8, &proof), Ok(()));
        assert_eq!(
            verify_consistency(3, 8, &r3, &r8, &proof[1..]),
            Err(MerkleError::InvalidProofLength {
                expected: proof.len(),
                actual: proof.len() - 1
            })
        );
        assert_eq!(
            verify_consistency(3, 8, &r8, &r3, &proof),
            Err(MerkleError::ProofMismatch)
        );
    }

    /// A sparse reader that makes up a deterministic fake hash for any position and counts
    /// reads.
    #[derive(Default)]
    struct CountingReader {
        reads: Cell<u64>,
    }

    impl HashReader for CountingReader {
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
            self.reads.set(self.reads.get() + 1);
            let mut fake = [level; 32];
            fake[..8].copy_from_slice(&index.to_be_bytes());
            Ok(fake)
        }
    }

    fn reads_of<T>(f: impl FnOnce(&CountingReader) -> T) -> u64 {
        let reader = CountingReader::default();
        f(&reader);
        reader.reads.get()
    }

    #[test]
    fn proofs_and_roots_read_at_most_twice_log2_size_hashes() {
        let mut sizes: Vec<u64> = (2..=260).collect();
        sizes.extend([
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 1,
            999_999,
            1 << 40,
            u64::MAX,
        ]);
        for n in sizes {
            let bound = 2 * u64::from(ceil_log2(n));
            let mut points: Vec<u64> = vec![0, 1, n / 3, n / 2, n - 2, n - 1];
            if n <= 260 {
                points = (0..n).collect();
            }
            for &m in &points {
                let reads = reads_of(|r| inclusion_proof(m, n, r).unwrap());
                assert!(reads <= bound, "inclusion {m}/{n}: {reads} reads > {bound}");
                let old = m.max(1);
                let reads = reads_of(|r| consistency_proof(old, n, r).unwrap());
                assert!(
                    reads <= bound,
                    "consistency {old}/{n}: {reads} reads > {bound}"
                );
            }
            let reads = reads_of(|r| root(n, r).unwrap());
            assert_eq!(reads, u64::from(n.count_ones()));
        }
    }

    #[test]
    fn generated_vectors_pass_check() {
        let doc = vectors::generate();
        assert_eq!(vectors::check(&doc), Ok(()));
        let cases = doc.as_array().unwrap();
        assert_eq!(cases.len(), vectors::MAX_SEQUENCE_SIZE as usize + 2);
        let ct = cases.last().unwrap();
        assert_eq!(ct["root"], CT_ROOTS[7]);
    }

    #[test]
    fn vector_check_rejects_altered_documents() {
        let doc = vectors::generate();
        let mut bad_root = doc.clone();
        bad_root[5]["root"] = serde_json::json!(CT_ROOTS[0]);
        assert!(vectors::check(&bad_root).is_err());
        let mut bad_proof = doc.clone();
        bad_proof[9]["inclusion"][3]["proof"][1] = serde_json::json!(CT_ROOTS[0]);
        assert!(vectors::check(&bad_proof).is_err());
        let mut bad_consistency = doc.clone();
        bad_consistency[9]["consistency"][3]["proof"][0] = serde_json::json!(CT_ROOTS[0]);
        assert!(vectors::check(&bad_consistency).is_err());
        let mut bad_size = doc;
        bad_size[9]["inclusion"][0]["size"] = serde_json::json!(10);
        assert!(vectors::check(&bad_size).is_err());
        assert!(vectors::check(&serde_json::json!({"leaves": []})).is_err());
    }

    /// Writes `spec/vectors/merkle.json` when `UPDATE_VECTORS=1`; otherwise checks that the
    /// committed file, if present, is exactly what the generator produces.
    #[test]
    fn vectors_file_matches_generator() {
        let path = std::env::var("MERKLE_VECTORS_PATH").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/merkle.json").to_string()
        });
        let text = serde_json::to_string_pretty(&vectors::generate()).unwrap() + "\n";
        if std::env::var("UPDATE_VECTORS").as_deref() == Ok("1") {
            std::fs::write(&path, text).unwrap();
        } else if let Ok(committed) = std::fs::read_to_string(&path) {
            assert!(
                committed == text,
                "{path} is stale; rerun with UPDATE_VECTORS=1"
            );
        }
    }

    proptest! {
        #[test]
        fn inclusion_proof_verifies_and_matches_reference(
            (size, index) in (1u64..2000).prop_flat_map(|n| (Just(n), 0..n))
        ) {
            let (tree, leaves) = big_tree();
            let prefix = &leaves[..size as usize];
            let head = tree.root_at(size).unwrap();
            prop_assert_eq!(head, reference::mth(prefix));
            let proof = tree.inclusion_proof(index, size).unwrap();
            prop_assert_eq!(&proof, &reference::path(index as usize, prefix));
            prop_assert_eq!(verify_inclusion(&prefix[index as usize], index, size, &proof, &head), Ok(()));
        }

        #[test]
        fn inclusion_proof_fails_when_proof_element_index_or_root_altered(
            (size, index, shift) in (2u64..2000).prop_flat_map(|n| (Just(n), 0..n, 1..n))
        ) {
            let (tree, leaves) = big_tree();
            let leaf = leaves[index as usize];
            let head = tree.root_at(size).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            for i in 0..proof.len() {
                let mut altered = proof.clone();
                altered[i] = flip(&altered[i]);
                prop_assert_eq!(
                    verify_inclusion(&leaf, index, size, &altered, &head),
                    Err(MerkleError::ProofMismatch)
                );
            }
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &flip(&head)),
                Err(MerkleError::ProofMismatch)
            );
            prop_assert_eq!(
                verify_inclusion(&flip(&leaf), index, size, &proof, &head),
                Err(MerkleError::ProofMismatch)
            );
            let other = (index + shift) % size;
            prop_assert!(verify_inclusion(&leaf, other, size, &proof, &head).is_err());
        }

        #[test]
        fn inclusion_proof_with_altered_size_fails_unless_path_shape_is_identical(
            (size, index, other_size) in (1u64..2000).prop_flat_map(|n| (Just(n), 0..n, 1u64..2100))
        ) {
            prop_assume!(other_size != size);
            let (tree, leaves) = big_tree();
            let head = tree.root_at(size).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            let result = verify_inclusion(&leaves[index as usize], index, other_size, &proof, &head);
            let same_shape = index < other_size && path_shape(index, other_size) == path_shape(index, size);
            prop_assert_eq!(result.is_ok(), same_shape);
        }

        #[test]
        fn consistency_proof_verifies_and_matches_reference(
            (new, old) in (1u64..2000).prop_flat_map(|n| (Just(n), 1..=n))
        ) {
            let (tree, leaves) = big_tree();
            let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
            let proof = tree.consistency_proof(old, new).unwrap();
            prop_assert_eq!(&proof, &reference::proof(old as usize, &leaves[..new as usize]));
            prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
        }

        #[test]
        fn consistency_proof_fails_when_proof_element_or_either_root_altered(
            (new, old) in (1u64..2000).prop_flat_map(|n| (Just(n), 1..=n))
        ) {
            let (tree, _) = big_tree();
            let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
            let proof = tree.consistency_proof(old, new).unwrap();
            for i in 0..proof.len() {
                let mut altered = proof.clone();
                altered[i] = flip(&altered[i]);
                prop_assert_eq!(
                    verify_consistency(old, new, &old_root, &new_root, &altered),
                    Err(MerkleError::ProofMismatch)
                );
            }
            prop_assert_eq!(
                verify_consistency(old, new, &flip(&old_root), &new_root, &proof),
                Err(MerkleError::ProofMismatch)
            );
            prop_assert_eq!(
                verify_consistency(old, new, &old_root, &flip(&new_root), &proof),
                Err(MerkleError::ProofMismatch)
            );
        }

        #[test]
        fn consistency_proof_fails_when_old_size_altered(
            (new, old, other) in (2u64..2000).prop_flat_map(|n| (Just(n), 1..n, 1..n))
        ) {
            prop_assume!(other != old);
            let (tree, _) = big_tree();
            let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
            let proof = tree.consistency_proof(old, new).unwrap();
            prop_assert!(verify_consistency(other, new, &old_root, &new_root, &proof).is_err());
        }
    }
}
