//! Bounded pagination of the log: newest first from a cursor, or a member's history in log
//! order, filtered by what an entry's bytes say.
//!
//! Invariant: one call examines at most `budget` entries (the explorer gives [`super::SCAN_MAX`])
//! and never one at or above the checkpoint size it is given; the cursor it returns resumes
//! exactly where it stopped.

use ledger::entry::Entry;
use ledger::types::MemberId;
use ledger_store::store::{Store, HISTORY_PAGE_MAX};

use super::PageError;
use crate::problem::ApiError;
use crate::reads::history_indexes;

/// Entries read from the store at once while scanning the log backwards.
const CHUNK: u64 = 256;

/// A page of indexes, and where the next page starts (`None`: there is none).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    pub indexes: Vec<u64>,
    pub next: Option<u64>,
}

/// Scans the log backwards from `before` (exclusive; at most `size`) for at most `rows`
/// entries that `want`s, examining at most `budget` (callers give [`super::SCAN_MAX`]); `next` is
/// the `before` of the next (older) page.
pub(crate) fn scan_back(
    store: &Store,
    size: u64,
    before: Option<u64>,
    rows: usize,
    budget: usize,
    want: &dyn Fn(&[u8]) -> bool,
) -> Result<Scan, PageError> {
    // Every index at or above `next` has been examined.
    let mut next = before.unwrap_or(size).min(size);
    let mut indexes = Vec::new();
    let mut examined = 0_usize;
    while next > 0 && indexes.len() < rows && examined < budget {
        let left = (budget - examined) as u64;
        let lo = next.saturating_sub(CHUNK.min(left));
        let chunk = store.entries(lo, next).map_err(ApiError::internal)?;
        let mut reached = lo;
        for (k, bytes) in chunk.iter().enumerate().rev() {
            let i = lo + k as u64;
            examined += 1;
            if want(bytes) {
                indexes.push(i);
                if indexes.len() == rows {
                    reached = i;
                    break;
                }
            }
        }
        next = reached;
    }
    Ok(Scan {
        indexes,
        next: (next > 0).then_some(next),
    })
}

/// Scans a member's history forwards from `after` (exclusive) for at most `rows` entries that
/// `want`s, examining at most `budget` (callers give [`super::SCAN_MAX`]); `next` is the `after` of
/// the next page.
pub(crate) fn scan_member(
    store: &Store,
    size: u64,
    member: &MemberId,
    after: Option<u64>,
    rows: usize,
    budget: usize,
    want: &dyn Fn(&[u8]) -> bool,
) -> Result<Scan, PageError> {
    let mut cursor = after;
    let mut indexes = Vec::new();
    let mut examined = 0_usize;
    while examined < budget {
        let ask = HISTORY_PAGE_MAX.min(budget - examined);
        let batch = history_indexes(store, member, cursor, ask, size)?;
        for &i in &batch {
            examined += 1;
            cursor = Some(i);
            let bytes = store
                .entry(i)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal(format!("history names missing entry {i}")))?;
            if want(&bytes) {
                indexes.push(i);
                if indexes.len() == rows {
                    return Ok(Scan {
                        indexes,
                        next: cursor,
                    });
                }
            }
        }
        if batch.len() < ask {
            return Ok(Scan {
                indexes,
                next: None,
            });
        }
    }
    Ok(Scan {
        indexes,
        next: cursor,
    })
}

/// Whether entry bytes are of type `wanted` (`None`: any).
pub(crate) fn of_type(wanted: Option<&'static str>) -> impl Fn(&[u8]) -> bool {
    move |bytes| match wanted {
        None => true,
        Some(t) => Entry::from_bytes(bytes).is_ok_and(|e| e.kind.type_name() == t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explorer::SCAN_MAX;
    use ledger::entry::EntryKind;

    /// A log of `n` entries in one store: earns of 1 point, to `alice` at every index
    /// divisible by 3 and to `bob` otherwise, and a `redeem` of alice's at every index
    /// divisible by 10 (instead of the earn).
    fn log_of(n: u64) -> (tempfile::TempDir, ledger_store::log::Log) {
        use ledger::entry::{Earn, Redeem};
        let dir = tempfile::tempdir().unwrap();
        let signer =
            ledger::checkpoint::NoteSigner::from_seed("test.example/log", &[7; 32]).unwrap();
        let mut log = ledger_store::log::Log::open(dir.path(), signer).unwrap();
        let one = ledger::types::Points::new(1).unwrap();
        let writes: Vec<ledger_store::log::Write> = (0..n)
            .map(|i| {
                let member: MemberId = if i % 3 == 0 { "alice" } else { "bob" }.parse().unwrap();
                let kind = if i % 10 == 0 && i > 0 {
                    EntryKind::Redeem(Redeem {
                        member: "alice".parse().unwrap(),
                        points: one,
                    })
                } else {
                    EntryKind::Earn(Earn {
                        member,
                        points: one,
                        qualifying: true,
                    })
                };
                ledger_store::log::Write {
                    id: format!("w{i}").parse().unwrap(),
                    kind,
                }
            })
            .collect();
        for chunk in writes.chunks(1000) {
            log.append(chunk, ledger::types::LogTime::new(1_000_000).unwrap())
                .unwrap();
        }
        assert_eq!(log.size(), n);
        (dir, log)
    }

    #[test]
    fn log_pages_run_newest_first_and_stop_at_both_ends() {
        let (_dir, log) = log_of(120);
        let all = of_type(None);
        let s = log.store();
        let p1 = scan_back(s, 120, None, 50, SCAN_MAX, &all).unwrap();
        assert_eq!(p1.indexes, (70..120).rev().collect::<Vec<_>>());
        assert_eq!(p1.next, Some(70));
        let p2 = scan_back(s, 120, p1.next, 50, SCAN_MAX, &all).unwrap();
        assert_eq!(p2.indexes, (20..70).rev().collect::<Vec<_>>());
        let p3 = scan_back(s, 120, p2.next, 50, SCAN_MAX, &all).unwrap();
        assert_eq!(p3.indexes, (0..20).rev().collect::<Vec<_>>());
        assert_eq!(p3.next, None, "nothing older than entry 0");
        // A cursor beyond the checkpoint is clamped to it; nothing above it is shown.
        let high = scan_back(s, 100, Some(10_000), 5, SCAN_MAX, &all).unwrap();
        assert_eq!(high.indexes, vec![99, 98, 97, 96, 95]);
        let empty = scan_back(s, 120, Some(0), 50, SCAN_MAX, &all).unwrap();
        assert_eq!((empty.indexes.len(), empty.next), (0, None));
    }

    #[test]
    fn a_type_filter_examines_a_bounded_number_of_entries() {
        let (_dir, log) = log_of(1200);
        let s = log.store();
        let redeems = of_type(Some("redeem"));
        let p = scan_back(s, 1200, None, 50, SCAN_MAX, &redeems).unwrap();
        assert_eq!(p.indexes.len(), 50);
        assert_eq!(p.indexes[0], 1190);
        assert_eq!(p.indexes[49], 700);
        assert_eq!(p.next, Some(700));
        // With a budget of 95 entries, only those in [1105, 1200) are examined.
        let p = scan_back(s, 1200, None, 50, 95, &redeems).unwrap();
        assert_eq!(
            p.indexes,
            vec![1190, 1180, 1170, 1160, 1150, 1140, 1130, 1120, 1110]
        );
        assert_eq!(
            p.next,
            Some(1105),
            "the next page goes on where the budget ended"
        );
        let none = scan_back(s, 1200, None, 50, SCAN_MAX, &of_type(Some("hold"))).unwrap();
        assert_eq!((none.indexes.len(), none.next), (0, None));
    }

    #[test]
    fn member_pages_run_in_log_order_with_a_cursor() {
        let (_dir, log) = log_of(100);
        let s = log.store();
        let alice: MemberId = "alice".parse().unwrap();
        let all = of_type(None);
        // Alice: earns at 0, 3, 6, .. and redeems at 10, 20, ..
        let mut hers: Vec<u64> = (0..100).filter(|i| i % 3 == 0 || (i % 10 == 0)).collect();
        hers.dedup();
        let p1 = scan_member(s, 100, &alice, None, 20, SCAN_MAX, &all).unwrap();
        assert_eq!(p1.indexes, hers[..20]);
        assert_eq!(p1.next, Some(hers[19]));
        let p2 = scan_member(s, 100, &alice, p1.next, 50, SCAN_MAX, &all).unwrap();
        assert_eq!(p2.indexes, hers[20..]);
        assert_eq!(p2.next, None);
        // Under a smaller checkpoint, nothing above it.
        let p = scan_member(s, 10, &alice, None, 50, SCAN_MAX, &all).unwrap();
        assert_eq!(p.indexes, vec![0, 3, 6, 9]);
        let redeems =
            scan_member(s, 100, &alice, None, 50, SCAN_MAX, &of_type(Some("redeem"))).unwrap();
        assert_eq!(redeems.indexes, (1..10).map(|k| k * 10).collect::<Vec<_>>());
        // A budget bounds the work and leaves a cursor.
        let p = scan_member(s, 100, &alice, None, 50, 5, &of_type(Some("redeem"))).unwrap();
        assert_eq!((p.indexes.clone(), p.next), (vec![10], Some(hers[4])));
    }
}
