//! The OpenAPI document's own parts: its info and the components no route names. Its paths
//! come from the routes each module exports (`utoipa_axum::routes!`), composed by
//! [`crate::router::document`]; the document is served at `/v1/openapi.json` and copied to
//! `spec/openapi.json` by the router's test, which fails when they differ.

use utoipa::OpenApi;

use crate::problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Open loyalty ledger node",
        version = "1",
        description = "HTTP API of a brand node. See spec/api.md."
    ),
    components(schemas(problem::Problem))
)]
struct Doc;

/// The document without paths: info and components.
pub fn base() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
