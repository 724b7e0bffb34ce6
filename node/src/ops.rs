//! Operational routes: liveness (`/healthz`), readiness (`/readyz`), metrics (`/metrics`) and
//! the OpenAPI document (`/v1/openapi.json`), which the router composes and hands in.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::{App, AppState};
use crate::problem::ApiError;

/// The operational routes; `GET /v1/openapi.json` answers `document`, serialized once here
/// and served from memory.
pub fn routes(document: &serde_json::Value) -> Router<Arc<App>> {
    let body: axum::body::Bytes = serde_json::to_vec(document)
        .expect("the OpenAPI document serializes")
        .into();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        )
}

async fn readyz(State(app): AppState) -> Response {
    if app.shared.is_ready() && !app.clock.is_held() {
        "ready\n".into_response()
    } else {
        ApiError::not_ready().into_response()
    }
}

async fn metrics(State(app): AppState) -> Response {
    app.metrics.store_memory(app.store.memory_use());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
