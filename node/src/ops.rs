//! Operational routes: liveness (`/healthz`), readiness (`/readyz`), metrics (`/metrics`) and
//! the OpenAPI document (`/v1/openapi.json`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::{App, AppState};
use crate::problem::ApiError;

/// The operational routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_json))
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
