//! The router: composes the routes of every module, the admission and metrics middleware and
//! the body limit.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::api::{
    adjust, authorise, earn, earn_many, hold, post_hold, redeem, refund, set_expiry, set_fx_rate,
    set_rate_card, set_tiers, void_hold,
};
use crate::app::{App, AppState};
use crate::federation_routes as fed;
use crate::problem::ApiError;
use crate::{admin, log_routes, reads};

/// Builds the router with every route, the body limit and metrics.
pub fn router(app: Arc<App>) -> Router {
    let body_max = app.config.limits.body_bytes_max;
    Router::new()
        .route("/v1/members/{member}/earn", post(earn))
        .route("/v1/earns", post(earn_many))
        .route("/v1/members/{member}/redeem", post(redeem))
        .route("/v1/members/{member}/adjust", post(adjust))
        .route("/v1/members/{member}/holds", post(hold))
        .route("/v1/holds/{hold}/post", post(post_hold))
        .route("/v1/holds/{hold}/void", post(void_hold))
        .route("/v1/redemptions/{redemption}/refund", post(refund))
        .route("/v1/policy/tiers", put(set_tiers))
        .route("/v1/policy/expiry", put(set_expiry))
        .route("/v1/policy/rate-card", put(set_rate_card))
        .route("/v1/policy/fx-rate", put(set_fx_rate))
        .route("/v1/members/{member}/authorisations", post(authorise))
        .route("/v1/holds/{hold}", get(reads::hold))
        .route("/v1/members/{member}", get(reads::member))
        .route("/v1/members/{member}/history", get(reads::history))
        .route("/v1/members/{member}/lots", get(reads::lots))
        .route("/v1/policy", get(reads::policy))
        .route(
            "/v1/admin/keys",
            post(admin::create_key).get(admin::list_keys),
        )
        .route("/v1/admin/keys/{key_id}", delete(admin::revoke_key))
        .route(crate::clock::CONFIRM_PATH, post(admin::confirm))
        .route("/v1/admin/clock", get(admin::status))
        .route("/v1/log/key", get(log_routes::key))
        .route("/v1/log/time", get(log_routes::time))
        .route("/v1/log/entries", get(log_routes::entries))
        .route("/v1/log/entries/{index}/receipt", get(log_routes::receipt))
        .route("/v1/log/proof/inclusion", get(log_routes::inclusion))
        .route("/v1/log/proof/consistency", get(log_routes::consistency))
        .route("/v1/log/checkpoints", get(log_routes::checkpoints))
        .route("/checkpoint", get(log_routes::checkpoint))
        .route("/v1/checkpoint/cosigned", get(fed::cosigned))
        .route("/v1/partners", get(fed::list))
        .route(
            "/v1/partners/{brand}/members/{member}",
            get(fed::mirrored_member),
        )
        .route("/v1/admin/partners", post(fed::add))
        .route("/v1/admin/partners/{brand}/unfreeze", post(fed::unfreeze))
        .route("/v1/evidence", get(fed::evidence))
        .route(
            "/v1/redemptions/quote",
            post(crate::redemption::quotes::quote),
        )
        .route(
            "/v1/redemptions/{redemption}/quote",
            get(crate::redemption::quotes::get_quote),
        )
        .route(
            "/v1/redemptions/{redemption}/prepare",
            post(crate::redemption::redeem::prepare),
        )
        .route(
            crate::redemption::redeem::PEER_PREPARE_PATH,
            post(crate::redemption::redeem::peer_prepare),
        )
        .route(
            "/v1/peer/redemptions/{redemption}",
            get(crate::redemption::redeem::peer_status),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/void",
            post(crate::redemption::redeem::peer_void),
        )
        .route(
            "/v1/redemptions/{redemption}/status",
            get(crate::redemption::redeem::status),
        )
        .route(
            "/v1/redemptions/{redemption}/void",
            post(crate::redemption::redeem::void),
        )
        .route(
            "/v1/reconciliation/{partner}",
            get(crate::redemption::reconcile::reconciliation),
        )
        .route(
            "/v1/redemptions/{redemption}/commit",
            post(crate::redemption::redeem::commit),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/commit",
            post(crate::redemption::redeem::peer_commit),
        )
        .route(
            "/v1/redemptions/{redemption}/refunds",
            post(crate::redemption::settle::refund),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/refunds",
            post(crate::redemption::settle::peer_refund),
        )
        .route(
            "/v1/statements/{partner}",
            post(crate::redemption::settle::cosign).get(crate::redemption::settle::list),
        )
        .route(
            crate::redemption::settle::PEER_STATEMENTS_PATH,
            post(crate::redemption::settle::peer_cosign),
        )
        .route(
            "/v1/admin/agreements",
            post(crate::redemption::agreements::approve),
        )
        .route(
            crate::redemption::agreements::PEER_PATH,
            post(crate::redemption::agreements::peer_approval),
        )
        .route("/v1/members/{member}/attestation", post(fed::attestation))
        .route("/v1/attestations/verify", post(fed::verify_attestation))
        .route("/v1/witness/add-checkpoint", post(fed::add_checkpoint))
        .route("/tile/{*path}", get(log_routes::tile))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_json))
        .merge(crate::explorer::routes())
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::guard::admit,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::max(body_max))
        .with_state(app)
}

async fn observe(State(app): AppState, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = crate::metrics::method_label(req.method().as_str());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let resp = next.run(req).await;
    app.metrics
        .observe_request(method, &route, resp.status().as_u16(), t0.elapsed());
    resp
}

/// `GET /v1/openapi.json`: the document is generated once per process and served from memory.
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&crate::openapi::document())
            .expect("the OpenAPI document serializes")
            .into()
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

async fn readyz(State(app): AppState) -> Response {
    if app.shared.is_ready() && !app.clock.is_held() {
        "ready\n".into_response()
    } else {
        ApiError::not_ready().into_response()
    }
}

async fn metrics(State(app): AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
