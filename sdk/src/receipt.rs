//! Checking that a write's receipt proves the write that was asked for.
//!
//! Invariant: a [`WriteResult`] is only ever built from a receipt whose entry has the id,
//! type and body of the request; with a pinned log key, the receipt also verified against
//! it ([`Receipt::verify`]: checkpoint signature, canonical entry, inclusion proof).

use ledger::checkpoint::{Checkpoint, NoteVerifier};
use ledger::entry::{Entry, EntryKind};
use ledger::receipt::Receipt;
use ledger::types::EntryId;

use crate::error::VerificationError;
use crate::types::WriteStatus;

/// A write the node accepted, with its checked receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// Logged by this request, or earlier under the same id.
    pub status: WriteStatus,
    /// The entry's log index.
    pub index: u64,
    /// The logged entry; its id, type and body are the request's.
    pub entry: Entry,
    /// The receipt as the node sent it: keep it to prove the write later.
    pub receipt: Receipt,
    /// The checkpoint the receipt was verified against; `None` when the client has no
    /// pinned log key (the receipt was then only checked for matching the request).
    pub checkpoint: Option<Checkpoint>,
}

impl WriteResult {
    /// Whether the receipt was verified against a pinned log key.
    pub fn is_verified(&self) -> bool {
        self.checkpoint.is_some()
    }
}

/// Checks that `receipt` is for the entry with `id` and `kind`, and, when `verifier` is
/// given, that it verifies against that log key. Returns the decoded entry and the
/// verified checkpoint.
pub fn check_receipt(
    receipt: &Receipt,
    verifier: Option<&NoteVerifier>,
    id: &EntryId,
    kind: &EntryKind,
) -> Result<(Entry, Option<Checkpoint>), VerificationError> {
    let (entry, checkpoint) = match verifier {
        Some(v) => {
            let verified = receipt.verify(v)?;
            (verified.entry, Some(verified.checkpoint))
        }
        None => (Entry::from_bytes(receipt.entry.as_bytes())?, None),
    };
    if &entry.id != id {
        return Err(VerificationError::Mismatch {
            field: "id",
            expected: id.to_string(),
            got: entry.id.to_string(),
        });
    }
    if entry.kind.type_name() != kind.type_name() {
        return Err(VerificationError::Mismatch {
            field: "type",
            expected: kind.type_name().to_owned(),
            got: entry.kind.type_name().to_owned(),
        });
    }
    if &entry.kind != kind {
        return Err(VerificationError::Mismatch {
            field: "body",
            expected: canonical(kind),
            got: canonical(&entry.kind),
        });
    }
    Ok((entry, checkpoint))
}

fn canonical(kind: &EntryKind) -> String {
    String::from_utf8_lossy(&ledger::encoding::to_canonical(&kind.body_value())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::checkpoint::{sign_checkpoint, NoteSigner};
    use ledger::entry::{Earn, Redeem};
    use ledger::merkle::MemoryTree;
    use ledger::types::{LogTime, MemberId, Points};

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.com/brand-a", &[7; 32]).unwrap()
    }

    fn earn(id: &str, member: &str, points: u64) -> Entry {
        Entry {
            time: LogTime::new(1_000).unwrap(),
            id: id.parse().unwrap(),
            kind: EntryKind::Earn(Earn {
                member: member.parse().unwrap(),
                points: Points::new(points).unwrap(),
                qualifying: true,
            }),
        }
    }

    /// A receipt for entry 1 of a two-entry log whose second entry is `entry`.
    fn receipt_for(entry: &Entry, signer: &NoteSigner) -> Receipt {
        let mut tree = MemoryTree::new();
        tree.push(&earn("e-0", "m0", 1).to_bytes()).unwrap();
        tree.push(&entry.to_bytes()).unwrap();
        let cp = Checkpoint {
            origin: signer.name().to_owned(),
            size: 2,
            root: tree.root().unwrap(),
            extensions: vec![],
        };
        Receipt {
            index: 1,
            entry: String::from_utf8(entry.to_bytes()).unwrap(),
            inclusion_proof: tree
                .inclusion_proof(1, 2)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            checkpoint: sign_checkpoint(&cp, signer).unwrap().to_string(),
        }
    }

    fn asked(member: &str, points: u64) -> EntryKind {
        let m: MemberId = member.parse().unwrap();
        EntryKind::Earn(Earn {
            member: m,
            points: Points::new(points).unwrap(),
            qualifying: true,
        })
    }

    #[test]
    fn a_receipt_for_the_requested_entry_verifies() {
        let s = signer();
        let r = receipt_for(&earn("e-1", "m1", 100), &s);
        let (entry, cp) = check_receipt(
            &r,
            Some(&s.verifier()),
            &"e-1".parse().unwrap(),
            &asked("m1", 100),
        )
        .unwrap();
        assert_eq!(entry.id.as_str(), "e-1");
        assert_eq!(cp.unwrap().size, 2);
    }

    #[test]
    fn a_receipt_for_another_entry_is_refused() {
        let s = signer();
        let v = s.verifier();
        let r = receipt_for(&earn("e-1", "m1", 100), &s);
        let id = "e-1".parse().unwrap();
        let err = check_receipt(&r, Some(&v), &"e-2".parse().unwrap(), &asked("m1", 100));
        assert!(matches!(
            err,
            Err(VerificationError::Mismatch { field: "id", .. })
        ));
        let err = check_receipt(&r, Some(&v), &id, &asked("m1", 101));
        assert!(matches!(
            err,
            Err(VerificationError::Mismatch { field: "body", .. })
        ));
        let err = check_receipt(&r, Some(&v), &id, &asked("m2", 100));
        assert!(matches!(
            err,
            Err(VerificationError::Mismatch { field: "body", .. })
        ));
        let redeem = EntryKind::Redeem(Redeem {
            member: "m1".parse().unwrap(),
            points: Points::new(100).unwrap(),
        });
        let err = check_receipt(&r, Some(&v), &id, &redeem);
        assert!(matches!(
            err,
            Err(VerificationError::Mismatch { field: "type", .. })
        ));
        // Without a pinned key the entry is still compared with the request.
        let err = check_receipt(&r, None, &id, &asked("m1", 101));
        assert!(matches!(
            err,
            Err(VerificationError::Mismatch { field: "body", .. })
        ));
    }

    #[test]
    fn a_receipt_signed_by_another_key_or_with_a_tampered_entry_is_refused() {
        let s = signer();
        let other = NoteSigner::from_seed("example.com/brand-a", &[8; 32]).unwrap();
        let r = receipt_for(&earn("e-1", "m1", 100), &other);
        let id = "e-1".parse().unwrap();
        let err = check_receipt(&r, Some(&s.verifier()), &id, &asked("m1", 100));
        assert!(matches!(err, Err(VerificationError::Receipt(_))));
        // The entry bytes changed after signing: the inclusion proof no longer holds.
        let mut r = receipt_for(&earn("e-1", "m1", 100), &s);
        r.entry = String::from_utf8(earn("e-1", "m1", 1000).to_bytes()).unwrap();
        let err = check_receipt(&r, Some(&s.verifier()), &id, &asked("m1", 1000));
        assert!(matches!(err, Err(VerificationError::Receipt(_))));
    }
}
