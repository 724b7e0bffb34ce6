//! The router: composes the routes every module exports, the admission and metrics middleware
//! and the body limit. It defines no route of its own.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use loyalty_wire::ErrorCode;

use crate::app::{App, AppState};
use crate::problem::ApiError;

/// Builds the router: the routes of every module, the fallback, admission and metrics
/// middleware and the body limit.
pub fn router(app: Arc<App>) -> Router {
    let body_max = app.config.limits.body_bytes_max;
    Router::new()
        .merge(crate::api::routes())
        .merge(crate::reads::routes())
        .merge(crate::admin::routes())
        .merge(crate::log_routes::routes())
        .merge(crate::federation_routes::routes())
        .merge(crate::redemption::routes())
        .merge(crate::ops::routes())
        .merge(crate::explorer::routes())
        .fallback(|| async { ApiError::not_found(ErrorCode::NotFound, "no such route") })
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
