//! What the campaign's workload saw: every acknowledged write (with the receipt's index and
//! entry bytes), every local hold and cross-brand redemption with what was meant to happen to
//! it and what did, and counters of operations and error codes.
//!
//! Invariant: a write is recorded as acknowledged only after the SDK verified its receipt
//! against the node's pinned key (or, for the flow's receipts, the node did and the campaign
//! checks them again), so the checker may demand each one in the log, byte for byte.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ledger::receipt::Receipt;

/// One acknowledged write: its entry is at `index` in `brand`'s log, exactly `entry`.
#[derive(Debug, Clone)]
pub struct Acked {
    /// Index of the brand in the campaign's brand list.
    pub brand: usize,
    /// What the write was (`earn`, `hold`, `payable`, ...), for messages.
    pub what: &'static str,
    pub id: String,
    pub index: u64,
    /// The entry's canonical bytes, as text.
    pub entry: String,
}

/// What the workload means to do with a local hold once it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    Post,
    Void,
    /// Nothing: the node releases it after it expires.
    Abandon,
}

/// A local hold (no payee) the workload asked for.
#[derive(Debug, Clone)]
pub struct LocalHold {
    pub brand: usize,
    pub member: String,
    pub points: u64,
    /// Log time from which it can no longer be posted.
    pub expires_at: u64,
    pub intent: HoldEnd,
    /// The id of the post or void the workload sends.
    pub end_id: String,
    /// Whether the hold's creation was acknowledged.
    pub acked: bool,
    /// Whether the post or void was acknowledged.
    pub ended: bool,
    /// The last failure of the post or void, if any.
    pub last_error: Option<String>,
}

/// What the workload means to do with a cross-brand redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Quote, prepare and commit (`redeem_at_partner`).
    Commit,
    /// Quote and prepare, then void.
    Void,
}

/// Where a cross-brand redemption stands, as far as the campaign knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedemptionState {
    /// Not finished (a step failed, or it was interrupted): resumed at the end.
    Unfinished(String),
    /// Committed on both sides for this many minor units of the settlement currency.
    Committed(u64),
    /// The payer's hold was voided or released: nothing was committed.
    Voided,
    /// The payer holds nothing for it (the prepare never reached it, or was refused).
    NoHold,
    /// The end-of-run resume could not bring it to one of the states above.
    Stuck(String),
}

/// A refund of a committed redemption, decided at the payee.
#[derive(Debug, Clone)]
pub struct RefundRec {
    pub id: String,
    pub points: u64,
    /// Minor units taken off the obligation, once acknowledged.
    pub amount_minor: Option<u64>,
    pub last_error: Option<String>,
}

/// A cross-brand redemption: a member of `payer` redeems `points` at `payee`.
#[derive(Debug, Clone)]
pub struct Redemption {
    pub id: String,
    pub payer: usize,
    pub payee: usize,
    pub agreement: String,
    pub member: String,
    pub points: u64,
    pub authorisation: String,
    pub intent: Intent,
    pub state: RedemptionState,
    /// Refunds attempted, in order.
    pub refunds: Vec<RefundRec>,
    /// Why the workload left it unfinished, if it did (kept after the resume finishes it).
    pub first_failure: Option<String>,
}

/// Everything recorded, behind one lock (held only for short, synchronous updates).
#[derive(Debug, Default)]
pub struct Record {
    inner: Mutex<Inner>,
}

/// The recorded data.
#[derive(Debug, Default, Clone)]
pub struct Inner {
    pub acked: Vec<Acked>,
    pub holds: BTreeMap<String, LocalHold>,
    pub redemptions: BTreeMap<String, Redemption>,
    /// Operations started, by kind.
    pub ops: BTreeMap<&'static str, u64>,
    /// Failed calls, by error code (`transport` for transport failures).
    pub errors: BTreeMap<String, u64>,
    /// What the workload saw that breaks an invariant on the spot (a receipt that does not
    /// verify, say); the checker reports them with its own findings.
    pub violations: Vec<String>,
}

impl Record {
    /// Runs `f` on the recorded data under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("the record's lock"))
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> Inner {
        self.with(|i| i.clone())
    }

    /// Counts one operation of `kind`.
    pub fn op(&self, kind: &'static str) {
        self.with(|i| *i.ops.entry(kind).or_default() += 1);
    }

    /// Counts one failed call (a partner's refusal by the partner's own code too).
    pub fn error(&self, e: &sdk::Error) {
        let mut code = error_code(e);
        if let Some(inner) = e.partner_code() {
            code = format!("{code}/{inner}");
        }
        self.with(|i| *i.errors.entry(code).or_default() += 1);
    }

    /// Records an acknowledged write from its receipt.
    pub fn acked(&self, brand: usize, what: &'static str, receipt: &Receipt) {
        let id = entry_id(&receipt.entry).unwrap_or_default();
        self.with(|i| {
            i.acked.push(Acked {
                brand,
                what,
                id,
                index: receipt.index,
                entry: receipt.entry.clone(),
            })
        });
    }
}

/// The `id` of an entry's canonical text.
pub fn entry_id(entry: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(entry).ok()?;
    v["id"].as_str().map(str::to_owned)
}

/// A short name for an SDK error: the API's code, or the kind of failure.
pub fn error_code(e: &sdk::Error) -> String {
    match e {
        sdk::Error::Api { code, .. } => code.as_str().to_owned(),
        sdk::Error::Transport(_) => "transport".into(),
        sdk::Error::Verification(_) => "verification".into(),
        sdk::Error::Decode(_) => "decode".into(),
        sdk::Error::Invalid(_) => "invalid".into(),
    }
}

/// An SDK error as one line, with the API's detail.
pub fn describe(e: &sdk::Error) -> String {
    match e {
        sdk::Error::Api {
            status,
            code,
            detail,
            ..
        } => format!("{status} {code}: {detail}"),
        other => other.to_string(),
    }
}
