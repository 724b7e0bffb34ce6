//! The client's methods for the federation routes (spec/federation.md §3–§6).
//!
//! Invariants: like every other method, only retryable failures are retried; a fetched
//! attestation is checked against the pinned log key (when one is pinned) before it is
//! returned; a cosigned checkpoint is returned as verified only if it meets the caller's
//! witness policy.

use ledger::attestation::Attestation;
use ledger::types::{BrandId, MemberId};
use ledger::witness::{verify_cosigned_checkpoint, VerifiedCheckpoint, WitnessPolicy};
use reqwest::Method;

use super::{segment, Call, Client};
use crate::error::{Error, VerificationError};
use crate::federation::{
    AddPartnerRequest, AttestationVerdict, CosignedCheckpoint, Evidence, EvidenceList, PartnerList,
    PartnerMember, PartnerStatus,
};

impl Client {
    /// `GET /v1/partners` (scope `read`): every partner with its sync and witness status.
    pub async fn partners(&self) -> Result<Vec<PartnerStatus>, Error> {
        let list: PartnerList = self.json(Call::get("/v1/partners")).await?;
        Ok(list.partners)
    }

    /// `POST /v1/admin/partners` (scope `admin`): adds a partner, or pins the key of an
    /// unpinned one. The request is checked first ([`AddPartnerRequest::validate`]). Not
    /// retried: the caller decides whether to send it again.
    pub async fn add_partner(&self, req: &AddPartnerRequest) -> Result<PartnerStatus, Error> {
        req.validate()?;
        let mut call = Call::new(Method::POST, "/v1/admin/partners").json(req)?;
        call.retry = false;
        self.json(call).await
    }

    /// `POST /v1/admin/agreements` (scope `admin`): this brand's operator approves agreement
    /// terms. The node signs them and sends its approval to the other party; once both sides
    /// approved the same terms, both log the co-signed agreement (`status` is then `logged`,
    /// else `pending`). Safe to repeat.
    pub async fn approve_agreement(
        &self,
        terms: &ledger::agreement::AgreementTerms,
    ) -> Result<crate::federation::AgreementOutcome, Error> {
        terms
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let call = Call::new(Method::POST, "/v1/admin/agreements").json(terms)?;
        self.json(call).await
    }

    /// `POST /v1/redemptions/quote` (scope `redeem`): prices a partner's points at this brand
    /// from its verified mirror and logs the quote (locked until it expires). Exactly one of
    /// `points` and `price_minor` must be given. The receipt is verified when a log key is
    /// pinned.
    pub async fn quote(
        &self,
        req: &crate::federation::QuoteRequest,
    ) -> Result<crate::federation::QuoteAnswer, Error> {
        if req.points.is_some() == req.price_minor.is_some() {
            return Err(Error::Invalid(
                "give exactly one of `points` and `price_minor`".into(),
            ));
        }
        let call = Call::new(Method::POST, "/v1/redemptions/quote").json(req)?;
        let answer: crate::federation::QuoteAnswer = self.json(call).await?;
        self.check_quote(&answer)?;
        Ok(answer)
    }

    /// `GET /v1/redemptions/{redemption}/quote` (scope `read`): a logged quote, also after it
    /// expired.
    pub async fn get_quote(
        &self,
        redemption: &ledger::types::EntryId,
    ) -> Result<crate::federation::QuoteAnswer, Error> {
        let answer: crate::federation::QuoteAnswer = self
            .json(Call::get(format!(
                "/v1/redemptions/{}/quote",
                segment(redemption.as_str())
            )))
            .await?;
        self.check_quote(&answer)?;
        Ok(answer)
    }

    fn check_quote(&self, answer: &crate::federation::QuoteAnswer) -> Result<(), Error> {
        if let Some(key) = self.verifier() {
            let v = answer
                .receipt
                .verify(key)
                .map_err(|e| Error::Verification(VerificationError::from(e)))?;
            if v.entry.kind != ledger::entry::EntryKind::Quote(answer.quote.clone()) {
                return Err(Error::Decode(
                    "the quote's receipt is for another entry".into(),
                ));
            }
        }
        Ok(())
    }

    /// `POST /v1/redemptions/{redemption}/prepare` (scope `redeem`): asks the member's brand
    /// to hold the quoted points under the member's spend `authorisation` for this brand.
    /// Idempotent: retry with the same redemption after a timeout.
    pub async fn prepare(
        &self,
        redemption: &ledger::types::EntryId,
        authorisation: &ledger::types::EntryId,
    ) -> Result<crate::federation::Prepared, Error> {
        let call = Call::new(
            Method::POST,
            format!("/v1/redemptions/{}/prepare", segment(redemption.as_str())),
        )
        .json(&serde_json::json!({ "authorisation": authorisation }))?;
        let p: crate::federation::Prepared = self.json(call).await?;
        if p.redemption != redemption.as_str() {
            return Err(Error::Decode("a hold for another redemption".into()));
        }
        Ok(p)
    }

    /// `POST /v1/redemptions/{redemption}/commit` (scope `redeem`): reveals the preimage to the
    /// member's brand, which posts the hold and logs what it owes; this brand logs the
    /// receivable. Idempotent.
    pub async fn commit(
        &self,
        redemption: &ledger::types::EntryId,
    ) -> Result<crate::federation::Committed, Error> {
        let call = Call::new(
            Method::POST,
            format!("/v1/redemptions/{}/commit", segment(redemption.as_str())),
        )
        .json(&serde_json::json!({}))?;
        self.json(call).await
    }

    /// `GET /v1/redemptions/{redemption}/status` (scope `read`): the redemption as the member's
    /// brand's log shows it (the node verified its receipts).
    pub async fn redemption_status(
        &self,
        redemption: &ledger::types::EntryId,
    ) -> Result<crate::federation::RedemptionStatus, Error> {
        self.json(Call::get(format!(
            "/v1/redemptions/{}/status",
            segment(redemption.as_str())
        )))
        .await
    }

    /// `POST /v1/redemptions/{redemption}/void` (scope `redeem`): releases the hold at the
    /// member's brand (refused once committed).
    pub async fn void_redemption(
        &self,
        redemption: &ledger::types::EntryId,
    ) -> Result<crate::federation::RedemptionStatus, Error> {
        let call = Call::new(
            Method::POST,
            format!("/v1/redemptions/{}/void", segment(redemption.as_str())),
        )
        .json(&serde_json::json!({}))?;
        self.json(call).await
    }

    /// `GET /v1/reconciliation/{partner}` (scope `read`): the reconciliation report for a
    /// period (log times in ms, `to` exclusive), from this node's log and verified mirror.
    pub async fn reconciliation(
        &self,
        partner: &BrandId,
        agreement: Option<&ledger::types::EntryId>,
        from: u64,
        to: u64,
    ) -> Result<ledger::statement::Reconciliation, Error> {
        let mut path = format!(
            "/v1/reconciliation/{}?from={from}&to={to}",
            segment(partner.as_str())
        );
        if let Some(a) = agreement {
            path.push_str(&format!("&agreement={}", segment(a.as_str())));
        }
        self.json(Call::get(path)).await
    }

    /// `POST /v1/redemptions/{redemption}/refunds` (scope `redeem`), at the redeeming brand:
    /// refunds `points` of a committed cross-brand redemption on both sides (the counterpart of
    /// [`Client::redeem_at_partner`]; [`Client::refund`] refunds a redemption made at the
    /// member's own brand): the member's brand returns the points to the member
    /// and takes the refund's share off what it owes (the agreement's rounding, cumulative), and
    /// this brand logs its side. Idempotent by refund id: retry with the same request after a
    /// crash or a timeout. More than is left is refused (`partner_refused`/`refund_exceeds_
    /// obligation`).
    pub async fn refund_at_partner(
        &self,
        redemption: &ledger::types::EntryId,
        req: &crate::federation::RefundRequest,
    ) -> Result<crate::federation::Refunded, Error> {
        let call = Call::new(
            Method::POST,
            format!("/v1/redemptions/{}/refunds", segment(redemption.as_str())),
        )
        .json(req)?;
        let r: crate::federation::Refunded = self.json(call).await?;
        if r.redemption != redemption.as_str() || r.refund != req.refund.as_str() {
            return Err(Error::Decode("a refund of another redemption".into()));
        }
        Ok(r)
    }

    /// `POST /v1/statements/{partner}` (scope `admin`): co-signs the statement of settlement
    /// period `period` of the agreement with `partner` (which must have ended) and logs it on
    /// both sides, when both brands' lines all match; else `statement_disagreed` (see
    /// [`Client::reconciliation`]). Idempotent.
    pub async fn statement(
        &self,
        partner: &BrandId,
        agreement: Option<&ledger::types::EntryId>,
        period: u64,
    ) -> Result<crate::federation::LoggedStatement, Error> {
        let mut body = serde_json::json!({ "period": period });
        if let Some(a) = agreement {
            body["agreement"] = serde_json::json!(a);
        }
        let call = Call::new(
            Method::POST,
            format!("/v1/statements/{}", segment(partner.as_str())),
        )
        .json(&body)?;
        self.json(call).await
    }

    /// `GET /v1/statements/{partner}` (scope `read`): every co-signed statement logged with
    /// `partner`, by period.
    pub async fn statements(
        &self,
        partner: &BrandId,
        agreement: Option<&ledger::types::EntryId>,
    ) -> Result<Vec<crate::federation::LoggedStatement>, Error> {
        let mut path = format!("/v1/statements/{}", segment(partner.as_str()));
        if let Some(a) = agreement {
            path.push_str(&format!("?agreement={}", segment(a.as_str())));
        }
        self.json(Call::get(path)).await
    }

    /// Redeems a partner brand's points here, end to end: quote, prepare (the member's brand
    /// holds the points), commit. Every step is idempotent by the redemption id, so calling
    /// it again with the same request after a crash or a timeout resumes where it stopped; a
    /// redemption whose hold was voided or released fails with `hold_not_open`. Deliver the
    /// reward only after this returns.
    pub async fn redeem_at_partner(
        &self,
        req: &crate::federation::RedeemAtPartner,
    ) -> Result<crate::federation::Committed, Error> {
        self.quote(&crate::federation::QuoteRequest {
            redemption: req.redemption.clone(),
            agreement: req.agreement.clone(),
            payer: req.payer.clone(),
            member: req.member.clone(),
            points: req.points,
            price_minor: req.price_minor,
            ttl_ms: None,
        })
        .await?;
        self.prepare(&req.redemption, &req.authorisation).await?;
        self.commit(&req.redemption).await
    }

    /// `POST /v1/admin/partners/{brand}/unfreeze` (scope `admin`): lifts the freeze evidence
    /// put on a partnership; the evidence stays.
    pub async fn unfreeze_partner(&self, brand: &BrandId) -> Result<PartnerStatus, Error> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/admin/partners/{}/unfreeze", segment(brand.as_str())),
        ))
        .await
    }

    /// `GET /v1/partners/{brand}/members/{member}` (scope `read`): a partner's member, from
    /// this node's verified mirror. Check it against the partner's key with
    /// [`PartnerMember::verify`].
    pub async fn partner_member(
        &self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<PartnerMember, Error> {
        self.json(Call::get(format!(
            "/v1/partners/{}/members/{}",
            segment(brand.as_str()),
            segment(member.as_str())
        )))
        .await
    }

    /// `GET /v1/evidence` (scope `read`): the equivocation evidence this node holds.
    pub async fn evidence(&self) -> Result<Vec<Evidence>, Error> {
        let list: EvidenceList = self.json(Call::get("/v1/evidence")).await?;
        Ok(list.evidence)
    }

    /// `GET /v1/checkpoint/cosigned`: the latest checkpoint with its witnesses'
    /// cosignatures, unverified.
    pub async fn cosigned_checkpoint(&self) -> Result<CosignedCheckpoint, Error> {
        self.json(Call::get("/v1/checkpoint/cosigned")).await
    }

    /// The latest cosigned checkpoint, verified: signed by `policy.log` and cosigned by at
    /// least `policy.quorum` of `policy.witnesses`, with the size the node claims.
    pub async fn verified_cosigned_checkpoint(
        &self,
        policy: &WitnessPolicy,
    ) -> Result<VerifiedCheckpoint, Error> {
        let c = self.cosigned_checkpoint().await?;
        let v = verify_cosigned_checkpoint(&c.note, policy).map_err(VerificationError::from)?;
        if v.checkpoint.size != c.size {
            return Err(VerificationError::Mismatch {
                field: "size",
                expected: c.size.to_string(),
                got: v.checkpoint.size.to_string(),
            }
            .into());
        }
        Ok(v)
    }

    /// `POST /v1/members/{member}/attestation` (scope `earn`): makes the node attest the
    /// member's tier (spec/federation.md §6). The statement must be about `member`; with a
    /// pinned log key the receipt must also verify against it and prove the statement
    /// (witnesses are not checked here: a partner verifies with its own policy, see
    /// [`crate::attestation::verify`]).
    pub async fn attestation(&self, member: &MemberId) -> Result<Attestation, Error> {
        let att: Attestation = self
            .json(Call::new(
                Method::POST,
                format!("/v1/members/{}/attestation", segment(member.as_str())),
            ))
            .await?;
        if &att.statement.member != member {
            return Err(VerificationError::Mismatch {
                field: "member",
                expected: member.to_string(),
                got: att.statement.member.to_string(),
            }
            .into());
        }
        if let Some(key) = &self.inner.verifier {
            let policy = WitnessPolicy {
                log: key.clone(),
                witnesses: Vec::new(),
                quorum: 0,
            };
            ledger::attestation::verify(&att, &att.statement.brand, &policy, None)
                .map_err(VerificationError::from)?;
        }
        Ok(att)
    }

    /// `POST /v1/attestations/verify` (scope `read`): asks the node to verify an attestation
    /// with its pinned partner keys and witness policy. A refusal is [`Error::Api`] with
    /// status 422 and an `attestation_*` code.
    pub async fn verify_attestation(&self, att: &Attestation) -> Result<AttestationVerdict, Error> {
        self.json(Call::new(Method::POST, "/v1/attestations/verify").json(att)?)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use ledger::checkpoint::CheckpointError;

    use super::*;
    use crate::error::ErrorCode;
    use crate::fake_node::federation::{partner_signer, witness, FedNode, BRAND, PARTNER};
    use crate::fake_node::{serve, signer};
    use crate::federation::witness_policy;
    use crate::retry::RetryPolicy;

    async fn client_of(node: &Arc<FedNode>, pin: bool) -> Client {
        let url = serve(node.clone().router()).await;
        let mut b = Client::builder(&url).api_key("lk_test").retry(RetryPolicy {
            attempts_max: 2,
            backoff_initial_ms: 1,
            backoff_max_ms: 5,
            total_ms_max: 5_000,
        });
        if pin {
            b = b.verifier(signer().verifier());
        }
        b.build().unwrap()
    }

    fn brand(s: &str) -> BrandId {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn partners_are_listed_added_and_unfrozen() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let partners = client.partners().await.unwrap();
        assert_eq!(partners.len(), 1);
        assert_eq!(partners[0].brand, brand(PARTNER));
        assert!(partners[0].frozen);
        let key = partner_signer().verifier_key_string();
        let added = client
            .add_partner(&AddPartnerRequest {
                brand: brand("brand-c"),
                url: "http://c.example:7700".into(),
                verifier_key: Some(key.clone()),
            })
            .await
            .unwrap();
        assert!(added.pinned);
        assert_eq!(added.verifier_key, Some(key));
        assert_eq!(client.partners().await.unwrap().len(), 2);
        let unfrozen = client.unfreeze_partner(&brand(PARTNER)).await.unwrap();
        assert!(!unfrozen.frozen);
        let err = client
            .unfreeze_partner(&brand("brand-z"))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
    }

    #[tokio::test]
    async fn a_bad_partner_request_is_refused_before_sending() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let witness_key = witness(1).verifier_key_string();
        for (url, key) in [
            ("ftp://c", None),
            ("http://c", Some("not-a-key".to_owned())),
            ("http://c", Some(witness_key)),
        ] {
            let err = client
                .add_partner(&AddPartnerRequest {
                    brand: brand("brand-c"),
                    url: url.into(),
                    verifier_key: key,
                })
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        }
        assert_eq!(node.add_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_mirrored_member_verifies_against_the_partner_key_only() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let m = client
            .partner_member(&brand(PARTNER), &"m1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(m.member.balance, 40);
        let cp = m.verify(&partner_signer().verifier()).unwrap();
        assert_eq!(cp.size, m.verified_size);
        // The node's own key does not sign the partner's log.
        assert!(m.verify(&signer().verifier()).is_err());
        // A receipt of another member's entry is refused.
        let mut other = m.clone();
        other.member.member = "m2".parse().unwrap();
        assert!(matches!(
            other.verify(&partner_signer().verifier()),
            Err(VerificationError::Mismatch {
                field: "member",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn evidence_is_listed() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let ev = client.evidence().await.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "fork");
        assert_eq!(ev[0].notes.len(), 2);
    }

    #[tokio::test]
    async fn the_cosigned_checkpoint_must_meet_the_witness_policy() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let c = client.cosigned_checkpoint().await.unwrap();
        assert!(c.is_final);
        assert_eq!(c.cosigners.len(), 2);
        let two = witness_policy(
            signer().verifier(),
            &[witness(1).verifier(), witness(2).verifier()],
            2,
        )
        .unwrap();
        let v = client.verified_cosigned_checkpoint(&two).await.unwrap();
        assert_eq!(v.checkpoint.size, c.size);
        assert_eq!(v.cosignatures.len(), 2);
        let three = witness_policy(
            signer().verifier(),
            &[
                witness(1).verifier(),
                witness(2).verifier(),
                witness(3).verifier(),
            ],
            3,
        )
        .unwrap();
        let err = client
            .verified_cosigned_checkpoint(&three)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Verification(VerificationError::Checkpoint(
                    CheckpointError::QuorumNotMet { got: 2, need: 3 }
                ))
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_attestation_is_fetched_verified_and_checked_by_the_node() {
        let node = FedNode::new();
        let client = client_of(&node, true).await;
        let member: MemberId = "m1".parse().unwrap();
        let att = client.attestation(&member).await.unwrap();
        assert_eq!(att.statement.brand, brand(BRAND));
        assert_eq!(att.statement.tier.as_str(), "gold");
        // Offline, with the verifier's own policy.
        let policy = witness_policy(
            signer().verifier(),
            &[witness(1).verifier(), witness(2).verifier()],
            2,
        )
        .unwrap();
        let v = crate::attestation::verify(&att, &brand(BRAND), &policy, None).unwrap();
        assert_eq!(v.cosigners().len(), 2);
        // By the node.
        let verdict = client.verify_attestation(&att).await.unwrap();
        assert!(verdict.valid);
        assert_eq!(verdict.valid_until, att.statement.valid_until);
        assert_eq!(verdict.cosigners.len(), 2);
        let mut forged = att.clone();
        forged.statement.tier = "platinum".parse().unwrap();
        let err = client.verify_attestation(&forged).await.unwrap_err();
        assert_eq!(err.status(), Some(422));
        assert_eq!(err.code(), Some(&ErrorCode::AttestationMismatch));
        // Only one call: a 422 is not retried.
        assert_eq!(node.verify_calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_attestation_of_another_member_or_key_is_refused() {
        let node = FedNode::new();
        let client = client_of(&node, false).await;
        let err = client
            .attestation(&"m9".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::UnknownMember));
        // The node answers about m1 when asked about "m1x": refused.
        node.answer_for_other_member.store(true, Ordering::SeqCst);
        let err = client
            .attestation(&"m1x".parse().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Verification(VerificationError::Mismatch {
                    field: "member",
                    ..
                })
            ),
            "{err:?}"
        );
        node.answer_for_other_member.store(false, Ordering::SeqCst);
        // Pinned to another log key, the receipt does not verify.
        let url = serve(node.clone().router()).await;
        let other = Client::builder(&url)
            .verifier(partner_signer().verifier())
            .build()
            .unwrap();
        let err = other.attestation(&"m1".parse().unwrap()).await.unwrap_err();
        assert!(
            matches!(err, Error::Verification(VerificationError::Attestation(_))),
            "{err:?}"
        );
    }
}
