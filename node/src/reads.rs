//! Read routes for apps: members, history, holds, policy. They read committed state records
//! from RocksDB and never wait for the sequencer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use ledger::state::read::{self, Record};
use ledger::state::{record_prefix, HoldState, HoldStatus, MemberState, Policies, RecordSource};
use ledger::types::{EntryId, LogTime, MemberId};

use crate::app::{scope, App, AppState, Authorized, Param};
use crate::problem::ApiError;
use crate::sequencer::now;

/// The read routes of members, holds and policies.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/holds/{hold}", get(hold))
        .route("/v1/members/{member}", get(member))
        .route("/v1/members/{member}/history", get(history))
        .route("/v1/members/{member}/lots", get(lots))
        .route("/v1/policy", get(policy))
}

/// Default page size.
pub const PAGE_DEFAULT: usize = 100;
/// Largest page size.
pub const PAGE_MAX: usize = 1000;

fn record<T: Record>(
    app: &crate::app::App,
    prefix: &[u8],
    name: &str,
) -> Result<Option<T>, ApiError> {
    store_record(&app.store, prefix, name)
}

/// A state record of any store (the log's or a mirror's).
pub fn store_record<T: Record>(
    store: &ledger::store::Store,
    prefix: &[u8],
    name: &str,
) -> Result<Option<T>, ApiError> {
    read::named(store, prefix, name).map_err(ApiError::internal)
}

fn policies(app: &crate::app::App) -> Result<Policies, ApiError> {
    Ok(record(app, record_prefix::POLICIES, "")?.unwrap_or_default())
}

/// One lot of a member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LotView {
    /// Index of the entry that created the lot.
    pub lot: u64,
    pub remaining: u64,
    /// Log time the lot expires at; null for never.
    pub expires_at: Option<u64>,
}

/// The most lots a member read or one lots page returns.
pub const LOTS_PAGE_MAX: usize = 50;

/// A member's points and tier.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub member: String,
    /// Points in lots (including lots past expiry not yet expired by an entry).
    pub balance: u64,
    /// Points spendable now.
    pub available: u64,
    /// Points in open holds.
    pub pending: u64,
    /// The recorded tier, evaluated as the log records it (null without a tier policy); a
    /// change that is due is logged by the node within its housekeeping interval.
    pub tier: Option<String>,
    /// When the tier lapses without further earning, at the time of the read (null: never or
    /// no policy).
    pub tier_valid_until: Option<u64>,
    /// The first lots, soonest-expiring first (at most 50; `lots_next_cursor` pages on
    /// through `GET /v1/members/{member}/lots`).
    pub lots: Vec<LotView>,
    /// How many lots the member has.
    pub lots_total: u64,
    /// Cursor for the next page of lots; null when `lots` holds them all.
    pub lots_next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/members/{member}", params(("member" = String, Path)),
    responses((status = 200, body = MemberView)), tag = "reads")]
pub async fn member(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<MemberId>,
) -> Result<Json<MemberView>, ApiError> {
    member_view(&app.store, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_member", format!("member {id} has no points")))
}

/// A member as a store's committed records show it (`None`: no such member).
pub fn member_view(
    store: &ledger::store::Store,
    id: &MemberId,
) -> Result<Option<MemberView>, ApiError> {
    let Some(m): Option<MemberState> = store_record(store, record_prefix::MEMBER, id.as_str())?
    else {
        return Ok(None);
    };
    let p: Policies = read::policies(store).map_err(ApiError::internal)?;
    member_view_of(store, id, m, &p, now()).map(Some)
}

/// The view of member `id` with summary `m` under policies `p` at log time `t`; reads the
/// member's lapsed lots, qualifying earnings and first page of lots from `src`.
pub(crate) fn member_view_of(
    src: &dyn RecordSource,
    id: &MemberId,
    m: MemberState,
    p: &Policies,
    t: LogTime,
) -> Result<MemberView, ApiError> {
    let lapsed = read::lapsed(src, id, t).map_err(ApiError::internal)?;
    let (tier, valid_until) = match &p.tier {
        Some(policy) => {
            let name = m
                .tier
                .clone()
                .unwrap_or_else(|| policy.tiers[0].name.clone());
            let until = match policy.tiers.iter().position(|x| x.name == name) {
                Some(rank) => {
                    let events = read::qualifying(src, id, &m).map_err(ApiError::internal)?;
                    ledger::tier::tier_valid_until(policy, &events, rank, t)
                }
                None => None,
            };
            (Some(name.to_string()), until.map(|u| u.get()))
        }
        None => (None, None),
    };
    let page = lots_page(src, id, None, LOTS_PAGE_MAX)?;
    Ok(MemberView {
        member: id.to_string(),
        balance: m.balance,
        available: m.balance.saturating_sub(lapsed),
        pending: m.pending,
        tier,
        tier_valid_until: valid_until,
        lots: page.lots,
        lots_total: m.lots,
        lots_next_cursor: page.next_cursor,
    })
}

/// One page of a member's lots.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LotsPage {
    pub lots: Vec<LotView>,
    /// Cursor for the next page; null on the last.
    pub next_cursor: Option<String>,
}

fn lots_page(
    src: &dyn RecordSource,
    id: &MemberId,
    after: Option<read::LotCursor>,
    limit: usize,
) -> Result<LotsPage, ApiError> {
    let limit = limit.clamp(1, LOTS_PAGE_MAX);
    let lots = read::lots(src, id, after, limit).map_err(ApiError::internal)?;
    let next_cursor = (lots.len() == limit)
        .then(|| lots.last())
        .flatten()
        .map(|l| read::format_lot_cursor((l.expires_at, l.id)));
    Ok(LotsPage {
        lots: lots
            .iter()
            .map(|l| LotView {
                lot: l.id.get(),
                remaining: l.remaining,
                expires_at: l.expires_at.map(|e| e.get()),
            })
            .collect(),
        next_cursor,
    })
}

/// Parameters of a lots page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LotsQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 50, default 50.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/members/{member}/lots", params(("member" = String, Path), LotsQuery),
    responses((status = 200, body = LotsPage)), tag = "reads")]
pub async fn lots(
    State(app): AppState,
    // The query is read first, then the key, then the member (the order of the answers).
    Query(q): Query<LotsQuery>,
    _: Authorized<scope::Read>,
    Param(id): Param<MemberId>,
) -> Result<Json<LotsPage>, ApiError> {
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(
            read::parse_lot_cursor(c)
                .ok_or_else(|| ApiError::bad_parameter("cursor: not a lots cursor"))?,
        ),
    };
    let limit = q.limit.unwrap_or(LOTS_PAGE_MAX);
    if limit == 0 || limit > LOTS_PAGE_MAX {
        return Err(ApiError::bad_parameter(format!(
            "limit: must be 1 to {LOTS_PAGE_MAX}"
        )));
    }
    if store_record::<MemberState>(&app.store, record_prefix::MEMBER, id.as_str())?.is_none() {
        return Err(ApiError::not_found(
            "unknown_member",
            format!("member {id} has no points"),
        ));
    }
    Ok(Json(lots_page(&app.store, &id, after, limit)?))
}

/// Cursor pagination parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<usize>,
}

impl Page {
    /// The cursor as an index and the limit, validated.
    pub fn parse(&self) -> Result<(Option<u64>, usize), ApiError> {
        let cursor = match &self.cursor {
            None => None,
            Some(c) => Some(
                c.parse::<u64>()
                    .map_err(|_| ApiError::bad_parameter("cursor: not a cursor from this node"))?,
            ),
        };
        let limit = self.limit.unwrap_or(PAGE_DEFAULT);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(ApiError::bad_parameter(format!(
                "limit: must be 1 to {PAGE_MAX}"
            )));
        }
        Ok((cursor, limit))
    }
}

/// One entry of a history page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    pub index: u64,
    /// The decoded entry.
    #[schema(value_type = Object)]
    pub entry: Value,
}

/// A page of a member's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    pub entries: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/members/{member}/history", params(("member" = String, Path), Page),
    responses((status = 200, body = HistoryPage)), tag = "reads")]
pub async fn history(
    State(app): AppState,
    // The query is read first, then the key, then the member (the order of the answers).
    Query(page): Query<Page>,
    _: Authorized<scope::Read>,
    Param(id): Param<MemberId>,
) -> Result<Json<HistoryPage>, ApiError> {
    let (cursor, limit) = page.parse()?;
    let size = app.shared.checkpoint().size;
    let indexes = history_indexes(&app.store, &id, cursor, limit, size)?;
    let mut entries = Vec::with_capacity(indexes.len());
    for i in indexes {
        let bytes = app
            .store
            .entry(i)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::internal(format!("history names missing entry {i}")))?;
        let entry: Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
        entries.push(HistoryItem { index: i, entry });
    }
    let next_cursor = (entries.len() == limit).then(|| entries[limit - 1].index.to_string());
    Ok(Json(HistoryPage {
        entries,
        next_cursor,
    }))
}

/// Indexes of a member's entries after `cursor` (exclusive), ascending, at most `limit`, of
/// those covered by the checkpoint of `size`.
pub(crate) fn history_indexes(
    store: &ledger::store::Store,
    id: &MemberId,
    cursor: Option<u64>,
    limit: usize,
    size: u64,
) -> Result<Vec<u64>, ApiError> {
    let mut indexes = store
        .history(id, cursor, limit)
        .map_err(ApiError::internal)?;
    indexes.retain(|i| *i < size);
    Ok(indexes)
}

/// A hold and where it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    pub id: String,
    pub index: u64,
    pub member: String,
    pub points: u64,
    pub expires_at: u64,
    pub payee: Option<String>,
    /// `open`, `posted` or `voided`.
    pub status: String,
    /// Index of the post or void entry.
    pub resolved_index: Option<u64>,
}

#[utoipa::path(get, path = "/v1/holds/{hold}", params(("hold" = String, Path)),
    responses((status = 200, body = HoldView)), tag = "reads")]
pub async fn hold(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<EntryId>,
) -> Result<Json<HoldView>, ApiError> {
    let h: HoldState = record(&app, record_prefix::HOLD, id.as_str())?
        .ok_or_else(|| ApiError::not_found("unknown_hold", format!("no hold with id {id}")))?;
    Ok(Json(hold_view(id.as_str(), &h)))
}

/// The view of hold `id` with state `h`.
pub(crate) fn hold_view(id: &str, h: &HoldState) -> HoldView {
    let (status, resolved) = match h.status {
        HoldStatus::Open => ("open", None),
        HoldStatus::Posted(i) => ("posted", Some(i.get())),
        HoldStatus::Voided(i) => ("voided", Some(i.get())),
    };
    HoldView {
        id: id.to_owned(),
        index: h.index.get(),
        member: h.member.to_string(),
        points: h.points,
        expires_at: h.expires_at.get(),
        payee: h.payee.as_ref().map(|p| p.to_string()),
        status: status.into(),
        resolved_index: resolved,
    }
}

/// A rate card in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateCardView {
    pub index: u64,
    pub currency: String,
    pub point_value: String,
    pub valid_from: u64,
}

/// The brand's policies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    #[schema(value_type = Option<Object>)]
    pub tier: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub expiry: Option<Value>,
    pub rate_cards: Vec<RateCardView>,
}

#[utoipa::path(get, path = "/v1/policy", responses((status = 200, body = PolicyView)), tag = "reads")]
pub async fn policy(
    State(app): AppState,
    _: Authorized<scope::Read>,
) -> Result<Json<PolicyView>, ApiError> {
    let p = policies(&app)?;
    Ok(Json(PolicyView {
        tier: p
            .tier
            .as_ref()
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null)),
        expiry: p
            .expiry
            .as_ref()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null)),
        rate_cards: p
            .rate_cards
            .iter()
            .map(|(i, c)| RateCardView {
                index: i.get(),
                currency: c.currency.to_string(),
                point_value: c.point_value.to_string(),
                valid_from: c.valid_from.get(),
            })
            .collect(),
    }))
}
