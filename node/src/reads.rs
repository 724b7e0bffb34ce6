//! Read routes for apps: members, history, holds, policy. They read committed state records
//! from RocksDB through the read model ([`crate::views`]) and never wait for the sequencer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ledger::state::read::{self, Record};
use ledger::state::{record_prefix, HoldState, MemberState, Policies, RecordSource};
use ledger::types::{EntryId, LogTime, MemberId};

use loyalty_wire::ErrorCode;

use crate::app::{scope, App, AppState, Authorized, Param};
use crate::views::{self, ReadError};

// The read model's views and record reads, at the paths other modules have used.
use crate::problem::ApiError;
pub use crate::views::{
    hold_view, store_record, HoldView, LotView, LotsPage, MemberView, LOTS_PAGE_MAX,
};
pub use loyalty_wire::{
    HistoryItem, HistoryPage, PolicyInfo as PolicyView, RateCardInfo as RateCardView,
};

/// The read routes of members, holds and policies.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(hold))
        .routes(routes!(member))
        .routes(routes!(history))
        .routes(routes!(lots))
        .routes(routes!(policy))
}

/// Default page size.
pub const PAGE_DEFAULT: usize = 100;

/// Largest page size.
pub const PAGE_MAX: usize = 1000;

fn record<T: Record>(
    app: &crate::app::App,
    prefix: &[u8],
    name: &str,
) -> Result<Option<T>, ReadError> {
    store_record(&app.store, prefix, name)
}

fn policies(app: &crate::app::App) -> Result<Policies, ReadError> {
    Ok(record(app, record_prefix::POLICIES, "")?.unwrap_or_default())
}

#[utoipa::path(get, path = "/v1/members/{member}", params(("member" = String, Path)),
    responses((status = 200, body = MemberView)), tag = "reads")]
pub async fn member(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<MemberId>,
) -> Result<Json<MemberView>, ApiError> {
    views::member_view(&app.store, &id)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownMember,
                format!("member {id} has no points"),
            )
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
    let Some(m) = store_record::<MemberState>(&app.store, record_prefix::MEMBER, id.as_str())?
    else {
        return Err(ApiError::not_found(
            ErrorCode::UnknownMember,
            format!("member {id} has no points"),
        ));
    };
    Ok(Json(views::lots_page(&app.store, &id, &m, after, limit)?))
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
    let indexes = views::history_indexes(&app.store, &id, cursor, limit, size)?;
    let mut entries = Vec::with_capacity(indexes.len());
    for i in indexes {
        let bytes = app
            .store
            .entry(i)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::internal(format!("history names missing entry {i}")))?;
        let entry = ledger::entry::Entry::from_bytes(&bytes).map_err(ApiError::internal)?;
        entries.push(HistoryItem { index: i, entry });
    }
    let next_cursor = (entries.len() == limit).then(|| entries[limit - 1].index.to_string());
    Ok(Json(HistoryPage {
        entries,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/holds/{hold}", params(("hold" = String, Path)),
    responses((status = 200, body = HoldView)), tag = "reads")]
pub async fn hold(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<EntryId>,
) -> Result<Json<HoldView>, ApiError> {
    let h: HoldState = record(&app, record_prefix::HOLD, id.as_str())?.ok_or_else(|| {
        ApiError::not_found(ErrorCode::UnknownHold, format!("no hold with id {id}"))
    })?;
    Ok(Json(hold_view(&id, &h)))
}

#[utoipa::path(get, path = "/v1/policy", responses((status = 200, body = PolicyView)), tag = "reads")]
pub async fn policy(
    State(app): AppState,
    _: Authorized<scope::Read>,
) -> Result<Json<PolicyView>, ApiError> {
    let p = policies(&app)?;
    Ok(Json(PolicyView {
        tier: p.tier.clone(),
        expiry: p.expiry.clone(),
        rate_cards: p
            .rate_cards
            .iter()
            .map(|(i, c)| RateCardView {
                index: i.get(),
                currency: c.currency,
                point_value: c.point_value,
                valid_from: c.valid_from,
            })
            .collect(),
    }))
}

// For the explorer, whose page errors convert from `ApiError`: the read model's member and
// history reads at the paths it uses. (Once it converts from `ReadError`, it can use
// `crate::views` directly and these go.)

/// [`views::member_view`], its error as an [`ApiError`].
pub fn member_view(
    store: &ledger_store::store::Store,
    id: &MemberId,
) -> Result<Option<MemberView>, ApiError> {
    Ok(views::member_view(store, id)?)
}

/// [`views::member_view_of`], its error as an [`ApiError`].
pub(crate) fn member_view_of(
    src: &dyn RecordSource,
    id: &MemberId,
    m: MemberState,
    p: &Policies,
    t: LogTime,
) -> Result<MemberView, ApiError> {
    Ok(views::member_view_of(src, id, m, p, t)?)
}

/// [`views::history_indexes`], its error as an [`ApiError`].
pub(crate) fn history_indexes(
    store: &ledger_store::store::Store,
    id: &MemberId,
    cursor: Option<u64>,
    limit: usize,
    size: u64,
) -> Result<Vec<u64>, ApiError> {
    Ok(views::history_indexes(store, id, cursor, limit, size)?)
}
