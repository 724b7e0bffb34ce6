//! Cross-brand redemption (spec/redemption.md): agreements, quotes, prepare and commit between
//! payee and payer, refunds, statements and reconciliation. It builds on the partners, mirrors
//! and signed peer requests of [`crate::federation`], and logs its steps through the sequencer.
//!
//! Code map:
//! - [`agreements`]: approving and co-signing agreements with partners (spec/redemption.md §2);
//! - [`payee`]: the payee's steps (prepare, status, void, commit), carried to the payer;
//! - [`payer`]: the payer's peer routes, its bounds on a partner's quote times and hold expiry,
//!   and the digest of the prepared quote that a commit must match;
//! - [`quotes`]: quotes priced from a verified mirror and logged (spec/redemption.md §3);
//! - [`redeem`]: what both sides of a redemption share (paths, bodies, derived ids, problems);
//! - [`refunds`]: refunds of committed redemptions, payee and payer sides;
//! - [`statements`]: co-signed settlement statements;
//! - [`reconcile`]: reconciliation reports from the own log and the verified mirror.

pub mod agreements;
pub mod payee;
pub mod payer;
pub mod quotes;
pub mod reconcile;
pub mod redeem;
pub mod refunds;
pub mod statements;

use std::sync::Arc;

use axum::routing::{get, post};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;

/// The redemption routes: the client's, and the partner's (`/v1/peer/...`, signed requests,
/// which the API's document leaves out).
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(quotes::quote))
        .routes(routes!(quotes::get_quote))
        .routes(routes!(payee::prepare))
        .routes(routes!(payee::status))
        .routes(routes!(payee::void))
        .routes(routes!(payee::commit))
        .routes(routes!(refunds::refund))
        .routes(routes!(statements::cosign, statements::list))
        .routes(routes!(reconcile::reconciliation))
        .routes(routes!(agreements::approve))
        .route(redeem::PEER_PREPARE_PATH, post(payer::peer_prepare))
        .route("/v1/peer/redemptions/{redemption}", get(payer::peer_status))
        .route(
            "/v1/peer/redemptions/{redemption}/void",
            post(payer::peer_void),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/commit",
            post(payer::peer_commit),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/refunds",
            post(refunds::peer_refund),
        )
        .route(
            statements::PEER_STATEMENTS_PATH,
            post(statements::peer_cosign),
        )
        .route(agreements::PEER_PATH, post(agreements::peer_approval))
}
