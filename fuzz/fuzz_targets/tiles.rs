//! C2SP tlog-tiles: the tile path parser (ledger/src/tiles.rs) and the server's tile bounds
//! (node/src/log_routes.rs), the entry bundle parser a node runs on a partner's tiles
//! (node/src/federation/sync.rs), and the Merkle proof checks run on a partner's proofs
//! (ledger/src/merkle.rs).
//!
//! Input: 8 bytes of tree size, 1 byte of bundle count, then the tile path / bundle / proof.
//!
//! Invariants checked:
//! - nothing panics (no overflow either: the targets are built with debug assertions);
//! - a parsed tile path is the one canonical encoding of its tile (what `tile_index_path`
//!   writes), width 1..=256;
//! - a tile the tree has covers exactly `width` indexes that the tree holds;
//! - a parsed bundle holds `count` entries and encodes back to its bytes;
//! - proofs made by the tree verify; arbitrary ones may fail but never panic.
#![no_main]

use ledger::merkle::{verify_consistency, verify_inclusion, Hash, MemoryTree};
use libfuzzer_sys::fuzz_target;
use node::federation::sync::{parse_bundle, tile_index_path};
use node::log_routes::{parse_tile_path, tile_range, TILE_WIDTH};

fn check_tile_path(path: &str, size: u64) {
    let Some(t) = parse_tile_path(path) else {
        return;
    };
    assert!(
        (1..=TILE_WIDTH).contains(&t.width),
        "{path}: width {}",
        t.width
    );
    let head = t.level.map_or("entries".to_string(), |l| l.to_string());
    let partial = if t.width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{}", t.width)
    };
    let canonical = format!("{head}/{}{partial}", tile_index_path(t.index));
    assert_eq!(canonical, path, "a tile path has one encoding");
    if let Ok(range) = tile_range(&t, size) {
        assert_eq!(range.end - range.start, t.width);
        assert_eq!(range.start, t.index * TILE_WIDTH);
        let h = t.level.map_or(0, |l| u32::from(l) * 8);
        assert!(h < 64);
        assert!(range.end << h <= size && (range.end << h) >> h == range.end);
    }
}

fn check_bundle(body: &[u8], count: usize) {
    if let Ok(entries) = parse_bundle(body, count) {
        assert_eq!(entries.len(), count);
        let mut again = Vec::new();
        for e in &entries {
            again.extend_from_slice(&(e.len() as u16).to_be_bytes());
            again.extend_from_slice(e);
        }
        assert_eq!(again, body);
    }
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn check_proofs(size: u64, a: u64, b: u64, rest: &[u8]) {
    // Arbitrary proofs against arbitrary sizes.
    let proof = hashes(rest);
    let root = proof.first().copied().unwrap_or([0; 32]);
    let _ = verify_inclusion(&[1; 32], a, size, &proof, &root);
    let _ = verify_consistency(a.min(b), a.max(b), &root, &[2; 32], &proof);
    // Proofs from a small real tree verify, and a changed one does not.
    let n = (size % 40) + 1;
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push(&i.to_be_bytes()).unwrap();
    }
    let (index, old) = (a % n, 1 + b % n);
    let root = tree.root().unwrap();
    let leaf = ledger::merkle::leaf_hash(&index.to_be_bytes());
    let mut p = tree.inclusion_proof(index, n).unwrap();
    verify_inclusion(&leaf, index, n, &p, &root).expect("a real inclusion proof verifies");
    if let (Some(first), Some(&byte)) = (p.first_mut(), rest.first()) {
        first[usize::from(byte) % 32] ^= 1;
        assert!(verify_inclusion(&leaf, index, n, &p, &root).is_err());
    }
    let c = tree.consistency_proof(old, n).unwrap();
    let old_root = tree.root_at(old).unwrap();
    verify_consistency(old, n, &old_root, &root, &c).expect("a real consistency proof verifies");
    verify_consistency(0, n, &ledger::merkle::empty_root(), &root, &[])
        .expect("every tree extends the empty one");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let size = u64::from_be_bytes(data[..8].try_into().unwrap());
    let count = usize::from(data[8]) + 1;
    let rest = &data[9..];
    if let Ok(path) = std::str::from_utf8(rest) {
        check_tile_path(path, size);
    }
    check_bundle(rest, count);
    let a = u64::from_be_bytes(
        rest.get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    );
    let b = size.rotate_left(17) ^ a;
    check_proofs(size, a, b, rest);
});
