//! The router: composes the routes every module exports, the admission and metrics middleware
//! and the body limit. It defines no route of its own.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use loyalty_wire::ErrorCode;

use crate::app::{App, AppState};
use crate::problem::ApiError;

/// The routes of the API's document, each module's with its OpenAPI paths.
fn documented() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(crate::api::routes())
        .merge(crate::reads::routes())
        .merge(crate::admin::routes())
        .merge(crate::log_routes::routes())
        .merge(crate::federation_routes::routes())
        .merge(crate::redemption::routes())
}

/// The OpenAPI document as JSON (spec/openapi.json): [`crate::openapi::base`] and every
/// module's documented routes.
pub fn document() -> serde_json::Value {
    to_json(documented().split_for_parts().1)
}

fn to_json(document: utoipa::openapi::OpenApi) -> serde_json::Value {
    serde_json::to_value(document).expect("the OpenAPI document serializes")
}

/// Builds the router: the routes of every module, the fallback, admission and metrics
/// middleware and the body limit.
pub fn router(app: Arc<App>) -> Router {
    let body_max = app.config.limits.body_bytes_max;
    let (routes, document) = documented().split_for_parts();
    routes
        .merge(crate::ops::routes(&to_json(document)))
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

#[cfg(test)]
mod tests {
    /// `spec/openapi.json` is the document the code generates. Regenerate it with
    /// `UPDATE_SPEC=1 cargo test -p node openapi`.
    #[test]
    fn spec_openapi_json_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/openapi.json");
        let generated = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SPEC").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "spec/openapi.json differs from the code; run UPDATE_SPEC=1 cargo test -p node openapi"
        );
    }

    /// The clock guard lets the confirmation through by [`crate::clock::CONFIRM_PATH`]; the
    /// route is where the handler's document says it is.
    #[test]
    fn the_clock_confirmation_is_routed_at_the_guards_path() {
        let document = super::document();
        assert!(document["paths"][crate::clock::CONFIRM_PATH]["post"].is_object());
    }
}
