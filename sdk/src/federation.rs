//! Bodies of the federation routes (spec/federation.md §3–§6) and the client-side checks of
//! what they carry: partner status, mirrored members, evidence, cosigned checkpoints and
//! tier attestations.
//!
//! Like [`crate::types`], responses are lenient about extra fields and strict about the
//! fields they carry. Nothing here trusts the node: [`PartnerMember::verify`] checks a
//! mirrored member's proof against the partner's own key, and [`crate::attestation::verify`]
//! checks an attestation offline.

use ledger::checkpoint::{open_checkpoint, Checkpoint, NoteError, NoteVerifier, SignatureType};
use ledger::entry::EntryKind;
use ledger::receipt::Receipt;
use ledger::types::BrandId;
use ledger::witness::WitnessPolicy;
use serde::{Deserialize, Serialize};

use crate::error::{Error, VerificationError};
use crate::types::MemberInfo;
pub use loyalty_wire::redemption::{
    AgreementOutcome, Committed, LoggedStatement, PayerCommit, Prepared, QuoteAnswer, QuoteRequest,
    RedemptionStatus, RefundRequest, Refunded,
};
pub use loyalty_wire::{AttestationVerdict, CosignedCheckpoint, PartnerList, PartnerStatus};

/// `POST /v1/admin/partners`: adds a partner, or pins the key of an unpinned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPartnerRequest {
    /// The partner's brand id.
    pub brand: BrandId,
    /// Base URL of its node (`http://` or `https://`).
    pub url: String,
    /// Its C2SP verifier key (type `0x01`), pinned out of band; omit to list it unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_key: Option<String>,
}

impl AddPartnerRequest {
    /// Checks what the node would refuse as malformed: an `http(s)` URL and, when given, a
    /// verifier key of type `0x01`.
    pub fn validate(&self) -> Result<(), Error> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| Error::Invalid(format!("url {:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(Error::Invalid(format!(
                "url {:?} is not an http(s) URL",
                self.url
            )));
        }
        if let Some(k) = &self.verifier_key {
            let v =
                NoteVerifier::parse(k).map_err(|e| Error::Invalid(format!("verifier key: {e}")))?;
            if v.signature_type() != SignatureType::Ed25519 {
                return Err(Error::Invalid(
                    "the verifier key must be a log key (type 0x01)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `GET /v1/partners/{brand}/members/{member}`: a partner's member, from the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerMember {
    /// The partner.
    pub brand: BrandId,
    /// The member as the partner's own node would show it.
    pub member: MemberInfo,
    /// The mirror's verified size.
    pub verified_size: u64,
    /// The partner's signed checkpoint of size `verified_size`.
    pub checkpoint: String,
    /// A receipt for the member's latest entry under `checkpoint`; `None` when the partner's
    /// log has no entry about the member.
    #[serde(default)]
    pub last_entry: Option<Receipt>,
}

impl PartnerMember {
    /// Checks the answer against the partner's pinned log key: the checkpoint is signed by it
    /// and has size `verified_size`, and the receipt (if any) verifies under that very
    /// checkpoint and is about this member. Returns the checkpoint.
    ///
    /// A member's history also lists the entries that act on one of their earlier entries
    /// without naming them (`post` and `void` of their hold, `refund` and `obligation_refund`
    /// of their redemption), so the latest entry may be one of those. Such an entry cannot be
    /// tied to the member from its own bytes: it is accepted on the strength of its inclusion
    /// proof. An entry that names another member, or that concerns no member at all, is
    /// refused.
    pub fn verify(&self, partner_key: &NoteVerifier) -> Result<Checkpoint, VerificationError> {
        let (cp, _) = open_checkpoint(&self.checkpoint, partner_key)?;
        if cp.size != self.verified_size {
            return Err(VerificationError::Mismatch {
                field: "verified_size",
                expected: self.verified_size.to_string(),
                got: cp.size.to_string(),
            });
        }
        if let Some(r) = &self.last_entry {
            let v = r.verify(partner_key)?;
            if v.checkpoint != cp {
                return Err(VerificationError::Mismatch {
                    field: "checkpoint",
                    expected: format!("size {}", cp.size),
                    got: format!("size {}", v.checkpoint.size),
                });
            }
            let names_no_member_but_acts_on_one = matches!(
                v.entry.kind,
                EntryKind::Post(_)
                    | EntryKind::Void(_)
                    | EntryKind::Refund(_)
                    | EntryKind::ObligationRefund(_)
            );
            match v.entry.kind.member() {
                Some(m) if m == &self.member.member => {}
                None if names_no_member_but_acts_on_one => {}
                about => {
                    return Err(VerificationError::Mismatch {
                        field: "member",
                        expected: self.member.member.to_string(),
                        got: about.map_or_else(|| "none".into(), |m| m.to_string()),
                    })
                }
            }
        }
        Ok(cp)
    }
}

/// One evidence record (spec/federation.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The record's id, in the order found.
    pub id: u64,
    /// The partner it is against.
    pub brand: BrandId,
    /// `fork`, `shrink`, `inconsistent`, `bad_entries`, `invalid_entry` or `bad_signature`.
    pub kind: String,
    /// When it was found, ms since the Unix epoch.
    pub detected_ms: u64,
    /// The signed notes it keeps, verbatim.
    #[serde(default)]
    pub notes: Vec<String>,
    /// What else it keeps (proof, range, index, reason), for people.
    #[serde(default)]
    pub detail: String,
}

/// `GET /v1/evidence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceList {
    /// Every record, oldest first.
    pub evidence: Vec<Evidence>,
}

/// Builds the [`WitnessPolicy`] of a log: its key, the witness keys and the quorum. A witness
/// may be given by its `0x04` key or by the partner's `0x01` log key, from which its witness
/// key is derived (spec/federation.md §1); duplicates count once. Fails with
/// [`Error::Invalid`] when the log key is not a `0x01` key or the quorum exceeds the number
/// of distinct witnesses.
pub fn witness_policy(
    log: NoteVerifier,
    witnesses: &[NoteVerifier],
    quorum: usize,
) -> Result<WitnessPolicy, Error> {
    if log.signature_type() != SignatureType::Ed25519 {
        return Err(Error::Invalid(
            "the log key must be a type 0x01 (Ed25519) key".into(),
        ));
    }
    let mut keys: Vec<NoteVerifier> = Vec::with_capacity(witnesses.len());
    for w in witnesses {
        let k = ledger::attestation::witness_key_from_log_key(w)
            .map_err(|e: NoteError| Error::Invalid(format!("witness key {w}: {e}")))?;
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    if quorum > keys.len() {
        return Err(Error::Invalid(format!(
            "a quorum of {quorum} cannot be met by {} distinct witness keys",
            keys.len()
        )));
    }
    Ok(WitnessPolicy {
        log,
        witnesses: keys,
        quorum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::checkpoint::{CosignatureSigner, NoteSigner};
    use ledger::types::LogTime;
    use serde_json::json;

    /// A mirrored member whose latest entry at the partner is a `post` of their hold (which
    /// names the hold, not the member) verifies; found by the fault campaign, where members'
    /// latest entries are often posts, voids and refunds. An entry of another member, or of
    /// no member at all, is still refused.
    #[test]
    fn a_mirrored_member_whose_latest_entry_acts_on_their_hold_verifies() {
        use ledger::checkpoint::sign_checkpoint;
        use ledger::entry::{Entry, Hold, Post, RateCard};
        use ledger::merkle::MemoryTree;

        let signer = NoteSigner::from_seed("example.com/brand-b", &[8; 32]).unwrap();
        let entry = |time: u64, id: &str, kind: EntryKind| Entry {
            time: LogTime::new(time).unwrap(),
            id: id.parse().unwrap(),
            kind,
        };
        let entries = [
            entry(
                1_000,
                "h-1",
                EntryKind::Hold(Hold {
                    member: "m1".parse().unwrap(),
                    points: ledger::types::Points::new(5).unwrap(),
                    expires_at: LogTime::new(9_000).unwrap(),
                    payee: None,
                    condition: None,
                    authorisation: None,
                }),
            ),
            entry(
                1_001,
                "p-1",
                EntryKind::Post(Post {
                    hold: "h-1".parse().unwrap(),
                    preimage: None,
                }),
            ),
            entry(
                1_002,
                "rc-1",
                EntryKind::RateCard(RateCard {
                    currency: "EUR".parse().unwrap(),
                    point_value: "0.01".parse().unwrap(),
                    valid_from: LogTime::new(2_000).unwrap(),
                }),
            ),
        ];
        let mut tree = MemoryTree::new();
        for e in &entries {
            tree.push(&e.to_bytes()).unwrap();
        }
        let cp = Checkpoint {
            origin: signer.name().to_owned(),
            size: 3,
            root: tree.root_at(3).unwrap(),
            extensions: vec![],
        };
        let note = sign_checkpoint(&cp, &signer).unwrap().to_string();
        let answer = |member: &str, index: u64| PartnerMember {
            brand: "brand-b".parse().unwrap(),
            member: serde_json::from_value(json!({
                "member": member, "balance": 0, "available": 0, "pending": 0, "tier": null,
                "tier_valid_until": null, "lots": []
            }))
            .unwrap(),
            verified_size: 3,
            checkpoint: note.clone(),
            last_entry: Some(Receipt {
                index,
                entry: String::from_utf8(entries[index as usize].to_bytes()).unwrap(),
                inclusion_proof: tree
                    .inclusion_proof(index, 3)
                    .unwrap()
                    .iter()
                    .map(hex::encode)
                    .collect(),
                checkpoint: note.clone(),
            }),
        };
        let key = signer.verifier();
        assert_eq!(answer("m1", 1).verify(&key).unwrap().size, 3);
        assert_eq!(answer("m1", 0).verify(&key).unwrap().size, 3);
        assert!(matches!(
            answer("m2", 0).verify(&key),
            Err(VerificationError::Mismatch {
                field: "member",
                ..
            })
        ));
        assert!(matches!(
            answer("m1", 2).verify(&key),
            Err(VerificationError::Mismatch {
                field: "member",
                ..
            })
        ));
    }

    #[test]
    fn partner_status_decodes_from_the_api_shape() {
        let p: PartnerStatus = serde_json::from_value(json!({
            "brand":"brand-b","url":"http://b:7700","verifier_key":null,"pinned":false,
            "frozen":false,"verified_size":0,"partner_size":0,"lag":0,"last_sync_ms":null,
            "last_error":null,"cosigned_size":0,"evidence":0
        }))
        .unwrap();
        assert!(!p.pinned);
        let c: CosignedCheckpoint =
            serde_json::from_value(json!({"size":3,"note":"n","cosigners":["w"],"final":true}))
                .unwrap();
        assert!(c.is_final);
        assert_eq!(serde_json::to_value(&c).unwrap()["final"], true);
    }

    #[test]
    fn add_partner_requests_are_checked_before_sending() {
        let key = NoteSigner::from_seed("loyalty.example/brand-b", &[4; 32])
            .unwrap()
            .verifier_key_string();
        let mut r = AddPartnerRequest {
            brand: "brand-b".parse().unwrap(),
            url: "http://b.example:7700".into(),
            verifier_key: Some(key),
        };
        r.validate().unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap()["verifier_key"],
            json!(r.verifier_key)
        );
        r.url = "ftp://b".into();
        assert!(r.validate().is_err());
        r.url = "https://b".into();
        r.verifier_key = Some(
            CosignatureSigner::from_seed("w", &[4; 32])
                .unwrap()
                .verifier_key_string(),
        );
        assert!(r.validate().is_err());
        r.verifier_key = None;
        r.validate().unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"brand":"brand-b","url":"https://b"})
        );
    }

    #[test]
    fn witness_policies_derive_witness_keys_and_bound_the_quorum() {
        let log = NoteSigner::from_seed("a", &[1; 32]).unwrap().verifier();
        let b = NoteSigner::from_seed("b", &[2; 32]).unwrap();
        let b_witness = CosignatureSigner::from_seed("b", &[2; 32])
            .unwrap()
            .verifier();
        let p = witness_policy(log.clone(), &[b.verifier(), b_witness.clone()], 1).unwrap();
        assert_eq!(p.witnesses, vec![b_witness.clone()]);
        assert!(witness_policy(log.clone(), &[b.verifier()], 2).is_err());
        assert!(witness_policy(b_witness, &[], 0).is_err());
        assert_eq!(witness_policy(log, &[], 0).unwrap().quorum, 0);
    }
}

/// What [`crate::Client::redeem_at_partner`] needs: a member of `payer` redeems its points here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemAtPartner {
    /// The redemption's id; reuse it to resume after a crash or a timeout.
    pub redemption: ledger::types::EntryId,
    pub agreement: ledger::types::EntryId,
    pub payer: BrandId,
    pub member: ledger::types::MemberId,
    /// The value of these points, or …
    pub points: Option<ledger::types::Points>,
    /// … the points for this price (minor units of the settlement currency).
    pub price_minor: Option<u64>,
    /// The member's spend authorisation at `payer` for this brand.
    pub authorisation: ledger::types::EntryId,
}
