//! The restore guard: before a node signs anything new after a takeover or a restart under
//! coordination, it asks its partners' witnesses which checkpoint of its log they cosigned
//! last, and refuses to sign when one of them knows a larger log than the node holds. A node
//! restored from an old backup (or a standby that missed batches) would otherwise sign a new
//! checkpoint at a size partners already saw with other entries: a fork, which freezes every
//! partnership.
//!
//! The question is the C2SP `tlog-witness` request itself: `add-checkpoint` with the node's
//! own size as the old size; a witness that knows another size answers 409 with it.

use std::time::Duration;

use axum::http::StatusCode;

use crate::federation::{peer, sync, Federation};

/// How long the guard waits for one witness.
pub const GUARD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the witnesses said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardReport {
    /// Witnesses that answered, with the size each knows.
    pub answered: Vec<(String, u64)>,
    /// Witnesses that did not answer.
    pub unreachable: Vec<String>,
}

/// Why the guard refuses to let the node sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("partner {partner} cosigned size {known} of this log, larger than the {held} entries held here: this node must not sign. Bring back the node (or the backup) that holds the log up to {known} and run it instead, or run this node as its standby (`loyalty-node run --standby-of URL`) so that it fetches the missing entries")]
    Behind {
        partner: String,
        known: u64,
        held: u64,
    },
    #[error("only {answered} partners' witnesses answered, fewer than ha.guard_quorum = {quorum}; retry when they are reachable, or lower ha.guard_quorum knowingly")]
    Quorum { answered: usize, quorum: usize },
}

/// Asks every pinned partner's witness (with `note`, this node's checkpoint of `size`).
pub async fn ask(fed: &Federation, note: &str, size: u64) -> GuardReport {
    let mut report = GuardReport::default();
    for partner in fed.partners() {
        if partner.witness.is_none() || partner.retired.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let path = "/v1/witness/add-checkpoint";
        let body = format!("old {size}\n\n{note}");
        let mut req = fed
            .http
            .post(format!("{}{path}", partner.url))
            .timeout(GUARD_TIMEOUT)
            .body(body.clone());
        for (k, v) in peer::sign(fed, &partner.brand, "POST", path, body.as_bytes()) {
            req = req.header(k, v);
        }
        let known = async {
            let resp = req
                .send()
                .await
                .map_err(|e| sync::describe(&e).to_owned())?;
            let status = resp.status();
            let text = sync::read_limited(resp, 1024).await?;
            match status {
                StatusCode::OK => Ok(size),
                StatusCode::CONFLICT => String::from_utf8_lossy(&text)
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| "409 without a size".to_owned()),
                s => Err(format!("HTTP {}", s.as_u16())),
            }
        }
        .await;
        match known {
            Ok(k) => report.answered.push((partner.brand.to_string(), k)),
            Err(e) => {
                tracing::warn!(partner = %partner.brand, error = %e, "restore guard: the witness did not answer");
                report.unreachable.push(partner.brand.to_string());
            }
        }
    }
    report
}

/// Judges a report for a node holding `held` entries.
pub fn judge(report: &GuardReport, held: u64, quorum: usize) -> Result<(), GuardError> {
    if let Some((partner, known)) = report.answered.iter().find(|(_, k)| *k > held) {
        return Err(GuardError::Behind {
            partner: partner.clone(),
            known: *known,
            held,
        });
    }
    if report.answered.len() < quorum {
        return Err(GuardError::Quorum {
            answered: report.answered.len(),
            quorum,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_that_knows_a_larger_log_stops_the_signature() {
        let r = GuardReport {
            answered: vec![("b".into(), 10), ("c".into(), 12)],
            unreachable: vec![],
        };
        assert!(judge(&r, 12, 2).is_ok());
        let e = judge(&r, 11, 0).unwrap_err();
        assert!(matches!(
            e,
            GuardError::Behind {
                known: 12,
                held: 11,
                ..
            }
        ));
        assert!(e.to_string().contains("--standby-of"));
    }

    #[test]
    fn too_few_answers_stop_the_signature_only_under_a_quorum() {
        let r = GuardReport {
            answered: vec![("b".into(), 3)],
            unreachable: vec!["c".into()],
        };
        assert!(judge(&r, 3, 1).is_ok());
        assert!(matches!(
            judge(&r, 3, 2),
            Err(GuardError::Quorum {
                answered: 1,
                quorum: 2
            })
        ));
    }
}
