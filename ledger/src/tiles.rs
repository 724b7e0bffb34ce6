//! Tiles: the path encoding and the entry-bundle framing of the C2SP specification
//! `c2sp.org/tlog-tiles`, as the node serves them under `/tile/` and as mirrors, auditors and
//! tests read them (see `spec/federation.md` in the repository for the project profile).
//!
//! In scope: [`TILE_WIDTH`], the tile path `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`
//! ([`TilePath`], [`parse_tile_path`], [`tile_index_path`]), and the framing of an entry bundle
//! (each entry as a 2-byte big-endian length, then its bytes: [`push_bundle_entry`],
//! [`bundle_entries`]). Out of scope: which tiles a tree of a given size has and what the
//! hashes in them are (the node reads them from its store, [`crate::merkle`] computes them),
//! and HTTP.
//!
//! # Invariants
//!
//! * Every tile has exactly one path: [`parse_tile_path`] accepts only the canonical encoding
//!   (three-digit groups, no leading `x000` group, no leading zeros in the width), and
//!   `parse_tile_path(&format!("entries/{}", tile_index_path(n)))` returns index `n`.
//! * A parsed width is in `1..=TILE_WIDTH`, a parsed level in `0..=63`.
//! * Nothing here panics on untrusted input: a bundle whose framing is broken yields a
//!   [`BundleError`], and no entry longer than [`ENTRY_BYTES_MAX`] is ever returned.

use crate::entry::ENTRY_BYTES_MAX;

/// Entries per full tile and entry bundle (C2SP tlog-tiles).
pub const TILE_WIDTH: u64 = 256;

/// A parsed tile path: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
#[derive(Debug, PartialEq, Eq)]
pub struct TilePath {
    /// `None` for an entry bundle.
    pub level: Option<u8>,
    pub index: u64,
    pub width: u64,
}

/// Parses the part after `/tile/` (C2SP tlog-tiles path encoding).
pub fn parse_tile_path(path: &str) -> Option<TilePath> {
    let (head, rest) = path.split_once('/')?;
    let level = if head == "entries" {
        None
    } else {
        if head.is_empty() || head.len() > 2 || !head.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let l: u8 = head.parse().ok()?;
        if l > 63 || (head.len() > 1 && head.starts_with('0')) {
            return None;
        }
        Some(l)
    };
    let (n_part, width) = match rest.split_once(".p/") {
        Some((n, w)) => {
            if w.is_empty()
                || w.len() > 3
                || !w.bytes().all(|b| b.is_ascii_digit())
                || w.starts_with('0')
            {
                return None;
            }
            let w: u64 = w.parse().ok()?;
            if !(1..TILE_WIDTH).contains(&w) {
                return None;
            }
            (n, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let parts: Vec<&str> = n_part.split('/').collect();
    // One encoding per index: a leading `x000` group would name the same tile twice.
    if parts.len() > 1 && parts[0] == "x000" {
        return None;
    }
    let mut index: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        let digits = if last { *p } else { p.strip_prefix('x')? };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    Some(TilePath {
        level,
        index,
        width,
    })
}

/// The C2SP tlog-tiles path of tile index `n`: groups of three digits, all but the last
/// prefixed with `x` (`1234067` is `x001/x234/067`).
pub fn tile_index_path(n: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Appends `entry` to an entry bundle being built: its length as 2 bytes big-endian, then its
/// bytes. Fails, leaving `bundle` unchanged, for an entry longer than 65535 bytes (which no
/// valid entry is: see [`crate::entry::ENTRY_BYTES_MAX`]).
pub fn push_bundle_entry(
    bundle: &mut Vec<u8>,
    entry: &[u8],
) -> Result<(), std::num::TryFromIntError> {
    let len = u16::try_from(entry.len())?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Why an entry bundle's framing is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle ends inside a length or inside an entry.
    #[error("truncated entry bundle")]
    Truncated,
    /// A length says more than [`ENTRY_BYTES_MAX`].
    #[error("an entry of {0} bytes exceeds the {ENTRY_BYTES_MAX} allowed")]
    TooLong(usize),
}

/// The entries of an entry bundle, in order, as [`bundle_entries`] reads them: each one's
/// bytes, then `None` at the end of the bundle; after a [`BundleError`], nothing more.
#[derive(Debug, Clone)]
pub struct BundleEntries<'a> {
    rest: &'a [u8],
    broken: bool,
}

/// Reads the entries of an entry bundle one at a time, without copying them.
pub fn bundle_entries(bundle: &[u8]) -> BundleEntries<'_> {
    BundleEntries {
        rest: bundle,
        broken: false,
    }
}

impl<'a> BundleEntries<'a> {
    /// The bytes not read yet (empty once the whole bundle was read).
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for BundleEntries<'a> {
    type Item = Result<&'a [u8], BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.broken || self.rest.is_empty() {
            return None;
        }
        let frame = self.rest.split_first_chunk::<2>().and_then(|(len, rest)| {
            let len = usize::from(u16::from_be_bytes(*len));
            if len > ENTRY_BYTES_MAX {
                Some(Err(BundleError::TooLong(len)))
            } else {
                rest.split_at_checked(len).map(Ok)
            }
        });
        match frame {
            Some(Ok((entry, rest))) => {
                self.rest = rest;
                Some(Ok(entry))
            }
            Some(Err(e)) => {
                self.broken = true;
                Some(Err(e))
            }
            None => {
                self.broken = true;
                Some(Err(BundleError::Truncated))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_c2sp_encoding() {
        assert_eq!(
            parse_tile_path("0/x001/x234/067"),
            Some(TilePath {
                level: Some(0),
                index: 1_234_067,
                width: 256
            })
        );
        assert_eq!(
            parse_tile_path("entries/000.p/17"),
            Some(TilePath {
                level: None,
                index: 0,
                width: 17
            })
        );
        assert_eq!(
            parse_tile_path("1/005"),
            Some(TilePath {
                level: Some(1),
                index: 5,
                width: 256
            })
        );
        for bad in [
            "0/5",
            "0/x001",
            "0/001/002",
            "00/000",
            "64/000",
            "0/000.p/256",
            "0/000.p/0",
            "0/000.p/01",
            "x/000",
            "0/",
            "0/x000/005",
            "entries/x000/x001/000",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn tile_indexes_follow_the_c2sp_path_encoding() {
        assert_eq!(tile_index_path(0), "000");
        assert_eq!(tile_index_path(5), "005");
        assert_eq!(tile_index_path(1000), "x001/000");
        assert_eq!(tile_index_path(1_234_067), "x001/x234/067");
    }

    #[test]
    fn every_index_has_one_path_that_parses_back() {
        for n in [0u64, 5, 999, 1000, 1_234_067, u64::MAX] {
            let t = parse_tile_path(&format!("entries/{}", tile_index_path(n))).unwrap();
            assert_eq!((t.level, t.index, t.width), (None, n, TILE_WIDTH));
            let t = parse_tile_path(&format!("3/{}.p/7", tile_index_path(n))).unwrap();
            assert_eq!((t.level, t.index, t.width), (Some(3), n, 7));
        }
    }

    #[test]
    fn bundles_read_back_entry_by_entry_and_stop_at_broken_framing() {
        let mut b = Vec::new();
        for e in [&b"hi"[..], b"", b"x"] {
            push_bundle_entry(&mut b, e).unwrap();
        }
        let got: Vec<_> = bundle_entries(&b).collect();
        assert_eq!(got, [Ok(&b"hi"[..]), Ok(&b""[..]), Ok(&b"x"[..])]);
        let mut it = bundle_entries(&b[..b.len() - 1]);
        assert_eq!(it.nth(2), Some(Err(BundleError::Truncated)));
        assert_eq!(it.next(), None);
        let mut it = bundle_entries(&[0, 2, b'h', b'i', 7]);
        assert_eq!(it.next(), Some(Ok(&b"hi"[..])));
        assert_eq!(it.remainder(), [7]);
        assert_eq!(it.next(), Some(Err(BundleError::Truncated)));
        let long = (ENTRY_BYTES_MAX as u16 + 1).to_be_bytes();
        let mut it = bundle_entries(&long);
        assert_eq!(
            it.next(),
            Some(Err(BundleError::TooLong(ENTRY_BYTES_MAX + 1)))
        );
        assert_eq!(it.next(), None);
        assert_eq!(bundle_entries(&[]).next(), None);
    }

    #[test]
    fn bundle_entries_are_length_prefixed() {
        let mut b = Vec::new();
        push_bundle_entry(&mut b, b"ab").unwrap();
        push_bundle_entry(&mut b, b"").unwrap();
        assert_eq!(b, [0, 2, b'a', b'b', 0, 0]);
        assert!(push_bundle_entry(&mut b, &vec![0; 65_536]).is_err());
        assert_eq!(b.len(), 6);
        push_bundle_entry(&mut b, &vec![1; 65_535]).unwrap();
        assert_eq!(&b[6..8], [0xff, 0xff]);
    }
}
