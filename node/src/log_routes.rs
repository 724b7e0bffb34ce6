//! The public, read-only log: checkpoints, entries, proofs and C2SP `tlog-tiles`.
//!
//! Invariant: everything served is at or below the latest signed checkpoint, so a client never
//! sees an entry or a hash that no checkpoint commits to.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ledger::merkle::{self, HashReader};
use ledger::receipt::Receipt;
pub use ledger::tiles::{parse_tile_path, TilePath, TILE_WIDTH};
use ledger_store::log::receipt_from_store;

use ledger::entry::HexHash;
pub use loyalty_wire::{
    CheckpointItem, CheckpointPage, ConsistencyProof, ErrorCode, InclusionProof, LogEntries,
    LogEntry, LogKey, LogTimeView,
};

use crate::app::{App, AppState};
use crate::problem::ApiError;
use crate::reads::Page;

/// The log's routes: key, time, entries, receipts, proofs, checkpoints and tiles.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    // A tile's path has several segments, which OpenAPI cannot say: it is documented as
    // `/tile/{path}` and routed as the wildcard `/tile/{*path}`.
    let (_, tile_doc, _) = routes!(tile);
    let mut router = OpenApiRouter::new()
        .routes(routes!(key))
        .routes(routes!(time))
        .routes(routes!(entries))
        .routes(routes!(receipt))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(checkpoints))
        .routes(routes!(checkpoint))
        .route("/tile/{*path}", get(tile));
    router.get_openapi_mut().paths.paths.extend(tile_doc.paths);
    router
}

/// Most entries one `/v1/log/entries` answer holds.
pub const ENTRIES_MAX: u64 = 1000;

#[utoipa::path(get, path = "/v1/log/key", responses((status = 200, body = LogKey)), tag = "log")]
pub async fn key(State(app): AppState) -> Json<LogKey> {
    Json(LogKey {
        origin: app.config.origin.clone(),
        verifier_key: app.verifier_key.clone(),
    })
}

#[utoipa::path(get, path = "/v1/log/time", responses((status = 200, body = LogTimeView)), tag = "log")]
pub async fn time(State(app): AppState) -> Result<Json<LogTimeView>, ApiError> {
    let size = app.shared.checkpoint().size;
    let last_entry_time = match size.checked_sub(1) {
        None => None,
        Some(last) => {
            let bytes = app
                .store
                .entries(last, size)
                .map_err(ApiError::internal)?
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::internal("the latest entry is missing"))?;
            let entry = ledger::entry::Entry::from_bytes(&bytes).map_err(ApiError::internal)?;
            Some(entry.time.get())
        }
    };
    let clock = crate::sequencer::now().get();
    let now = match last_entry_time {
        Some(t) if clock <= t => t.saturating_add(1).min(ledger::types::MAX_TIME_MS),
        _ => clock,
    };
    Ok(Json(LogTimeView {
        now,
        size,
        last_entry_time,
    }))
}

fn text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/checkpoint", responses((status = 200, description = "signed note", content_type = "text/plain")), tag = "log")]
pub async fn checkpoint(State(app): AppState) -> Response {
    text(app.shared.checkpoint().note.clone())
}

/// `?start=&end=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

#[utoipa::path(get, path = "/v1/log/entries", params(Range),
    responses((status = 200, body = LogEntries)), tag = "log")]
pub async fn entries(
    State(app): AppState,
    Query(r): Query<Range>,
) -> Result<Json<LogEntries>, ApiError> {
    let size = app.shared.checkpoint().size;
    if r.start > r.end || r.end - r.start > ENTRIES_MAX {
        return Err(ApiError::bad_parameter(format!(
            "need start <= end and at most {ENTRIES_MAX} entries"
        )));
    }
    let end = r.end.min(size);
    let mut out = Vec::new();
    if r.start < end {
        for (k, bytes) in app
            .store
            .entries(r.start, end)
            .map_err(ApiError::internal)?
            .into_iter()
            .enumerate()
        {
            out.push(LogEntry {
                index: r.start + k as u64,
                entry: String::from_utf8(bytes).map_err(ApiError::internal)?,
            });
        }
    }
    Ok(Json(LogEntries { entries: out }))
}

#[utoipa::path(get, path = "/v1/log/entries/{index}/receipt", params(("index" = u64, Path)),
    responses((status = 200, body = Object)), tag = "log")]
pub async fn receipt(
    State(app): AppState,
    Path(index): Path<u64>,
) -> Result<Json<Receipt>, ApiError> {
    let cp = app.shared.checkpoint();
    if index >= cp.size {
        return Err(ApiError::not_found(
            ErrorCode::NotFound,
            format!("no entry {index}"),
        ));
    }
    receipt_from_store(&app.store, index, cp.size, &cp.note)
        .map(Json)
        .map_err(ApiError::internal)
}

/// `?index=&size=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    pub index: u64,
    pub size: u64,
}

fn check_size(app: &crate::app::App, size: u64) -> Result<(), ApiError> {
    let committed = app.shared.checkpoint().size;
    if size > committed {
        return Err(ApiError::bad_parameter(format!(
            "size {size} is beyond the latest checkpoint ({committed})"
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/log/proof/inclusion", params(InclusionQuery),
    responses((status = 200, body = InclusionProof)), tag = "log")]
pub async fn inclusion(
    State(app): AppState,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    check_size(&app, q.size)?;
    let proof = merkle::inclusion_proof(q.index, q.size, &app.store)
        .map_err(|e| ApiError::bad_parameter(e.to_string()))?;
    Ok(Json(InclusionProof {
        index: q.index,
        size: q.size,
        proof: proof.into_iter().map(HexHash).collect(),
    }))
}

/// `?old=&new=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub old: u64,
    pub new: u64,
}

#[utoipa::path(get, path = "/v1/log/proof/consistency", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof)), tag = "log")]
pub async fn consistency(
    State(app): AppState,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    check_size(&app, q.new)?;
    let proof = merkle::consistency_proof(q.old, q.new, &app.store)
        .map_err(|e| ApiError::bad_parameter(e.to_string()))?;
    Ok(Json(ConsistencyProof {
        old: q.old,
        new: q.new,
        proof: proof.into_iter().map(HexHash).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/log/checkpoints", params(Page),
    responses((status = 200, body = CheckpointPage)), tag = "log")]
pub async fn checkpoints(
    State(app): AppState,
    Query(page): Query<Page>,
) -> Result<Json<CheckpointPage>, ApiError> {
    let (cursor, limit) = page.parse()?;
    checkpoints_page(&app, cursor, limit).map(Json)
}

/// The signed checkpoints of sizes above `cursor` (or all), ascending, at most `limit`, up to
/// the latest one.
pub(crate) fn checkpoints_page(
    app: &crate::app::App,
    cursor: Option<u64>,
    limit: usize,
) -> Result<CheckpointPage, ApiError> {
    let committed = app.shared.checkpoint().size;
    let list: Vec<CheckpointItem> = app
        .store
        .checkpoints(cursor, limit)
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|(size, _)| *size <= committed)
        .map(|(size, note)| CheckpointItem { size, note })
        .collect();
    let next_cursor = (list.len() == limit).then(|| list[limit - 1].size.to_string());
    Ok(CheckpointPage {
        checkpoints: list,
        next_cursor,
    })
}

/// What tile `t` holds in a tree of `size` leaves: the indexes of its entries (an entry
/// bundle) or of its hashes at tree level `8 * L` (a level-`L` tile). `not_found` when the
/// tree does not have all of them yet, or the tile lies beyond any tree.
pub fn tile_range(t: &TilePath, size: u64) -> Result<std::ops::Range<u64>, ApiError> {
    let missing =
        || ApiError::not_found(ErrorCode::NotFound, "the tree does not have this tile yet");
    let first = t
        .index
        .checked_mul(TILE_WIDTH)
        .ok_or_else(|| ApiError::not_found(ErrorCode::NotFound, "no such tile"))?;
    let end = first.checked_add(t.width).ok_or_else(missing)?;
    // Hashes at tree level h cover 2^h leaves each; the tile needs `end` of them.
    let h = t.level.map_or(0, |l| u32::from(l) * 8);
    let leaves_needed = end.checked_shl(h).filter(|v| v >> h == end);
    match leaves_needed {
        Some(n) if n <= size => Ok(first..end),
        _ => Err(missing()),
    }
}

#[utoipa::path(get, path = "/tile/{path}", params(("path" = String, Path)),
    responses((status = 200, description = "tile bytes", content_type = "application/octet-stream")), tag = "log")]
pub async fn tile(State(app): AppState, Path(path): Path<String>) -> Result<Response, ApiError> {
    let t = parse_tile_path(&path)
        .ok_or_else(|| ApiError::not_found(ErrorCode::NotFound, "not a tile path"))?;
    let size = app.shared.checkpoint().size;
    let range = tile_range(&t, size)?;
    let mut body = Vec::new();
    match t.level {
        None => {
            for bytes in app
                .store
                .entries(range.start, range.end)
                .map_err(ApiError::internal)?
            {
                ledger::tiles::push_bundle_entry(&mut body, &bytes).map_err(ApiError::internal)?;
            }
        }
        // Level 0 holds the leaf hashes: the hashes of the entries, read together.
        Some(0) => {
            let hashes = app
                .store
                .leaf_hashes(range.start, range.end)
                .map_err(ApiError::internal)?;
            if hashes.len() as u64 != range.end - range.start {
                return Err(ApiError::internal("entries missing under a tile"));
            }
            for hash in hashes {
                body.extend_from_slice(&hash);
            }
        }
        Some(l) => {
            // `tile_range` found the level's hashes, so the tree level 8L is below 64.
            let level = l
                .checked_mul(8)
                .ok_or_else(|| ApiError::internal("tile level"))?;
            for i in range {
                let hash = app
                    .store
                    .subtree_hash(level, i)
                    .map_err(ApiError::internal)?;
                body.extend_from_slice(&hash);
            }
        }
    }
    let immutable = if t.width == TILE_WIDTH {
        "public, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, immutable),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_round_trip_through_the_server_parser() {
        for n in [0u64, 5, 999, 1000, 1234067, 1_000_000_000] {
            let p = format!("entries/{}", crate::federation::sync::tile_index_path(n));
            let t = parse_tile_path(&p).unwrap();
            assert_eq!(t.index, n, "{p}");
        }
        assert_eq!(
            crate::federation::sync::tile_index_path(1234067),
            "x001/x234/067"
        );
    }

    #[test]
    fn tile_range_needs_every_leaf_and_never_overflows() {
        let tile = |level, index, width| TilePath {
            level,
            index,
            width,
        };
        assert_eq!(tile_range(&tile(None, 0, 256), 256).unwrap(), 0..256);
        assert_eq!(tile_range(&tile(None, 1, 17), 273).unwrap(), 256..273);
        assert!(tile_range(&tile(None, 1, 17), 272).is_err());
        assert_eq!(tile_range(&tile(Some(1), 0, 1), 256).unwrap(), 0..1);
        assert!(tile_range(&tile(Some(1), 0, 2), 511).is_err());
        assert!(tile_range(&tile(Some(8), 0, 1), u64::MAX).is_err());
        // The last tile index whose first hash fits in u64: its end does not, and the answer
        // is "missing", not an empty tile (it wrapped to an empty range before).
        let last = u64::MAX / TILE_WIDTH;
        for level in [None, Some(0), Some(1)] {
            assert!(tile_range(&tile(level, last, TILE_WIDTH), u64::MAX).is_err());
        }
        assert!(tile_range(&tile(Some(0), last + 1, 1), u64::MAX).is_err());
    }
}
