//! Request and response bodies of the node's HTTP API (spec/api.md), as typed structs: the
//! wire types of [`loyalty_wire`], which the node serves, and the SDK's own answers built from
//! them.

pub use loyalty_wire::*;

/// The most items one page may ask for (`limit`), per spec/api.md.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// The most entries one `GET /v1/log/entries` may ask for.
pub const LOG_ENTRIES_PAGE_MAX: u64 = 1000;

/// What became of one earn of a `POST /v1/earns` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarnOutcome {
    /// Logged, at this index, by this request (`appended`) or under the same id before
    /// (`existing`); its receipt is [`Client::entry_receipt`](crate::Client::entry_receipt).
    Logged {
        /// Whether this request logged it.
        status: WriteStatus,
        /// The entry's log index.
        index: u64,
    },
    /// Refused on its own (the request's other earns are unaffected).
    Refused {
        /// The HTTP status the earn would have had alone.
        status: u16,
        /// The stable error code.
        code: crate::ErrorCode,
        /// A human-readable explanation.
        detail: String,
    },
}

/// Answer to [`Client::earn_many`](crate::Client::earn_many).
#[derive(Debug, Clone)]
pub struct EarnsResult {
    /// The signed checkpoint note covering every logged earn of the request.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// One outcome per earn, in request order.
    pub results: Vec<EarnOutcome>,
}

/// The C2SP tlog-tiles path of tile index `n` (`1234067` is `x001/x234/067`).
pub use ledger::tiles::tile_index_path;
