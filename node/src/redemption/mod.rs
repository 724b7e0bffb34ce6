//! Cross-brand redemption (spec/redemption.md): agreements, quotes, prepare and commit between
//! payee and payer, refunds, statements and reconciliation. It builds on the partners, mirrors
//! and signed peer requests of [`crate::federation`], and logs its steps through the sequencer.
//!
//! Code map:
//! - [`handlers`]: the routes' handlers, which parse, call one step and answer (the only file
//!   here that knows the HTTP error type);
//! - what the steps refuse or fail with is [`crate::redemption_error::RedemptionError`], mapped
//!   to statuses and codes in [`crate::problem`];
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
pub mod handlers;
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
        .routes(routes!(handlers::quote))
        .routes(routes!(handlers::get_quote))
        .routes(routes!(handlers::prepare))
        .routes(routes!(handlers::status))
        .routes(routes!(handlers::void))
        .routes(routes!(handlers::commit))
        .routes(routes!(handlers::refund))
        .routes(routes!(handlers::cosign, handlers::list))
        .routes(routes!(handlers::reconciliation))
        .routes(routes!(handlers::approve))
        .route(redeem::PEER_PREPARE_PATH, post(handlers::peer_prepare))
        .route(
            "/v1/peer/redemptions/{redemption}",
            get(handlers::peer_status),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/void",
            post(handlers::peer_void),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/commit",
            post(handlers::peer_commit),
        )
        .route(
            "/v1/peer/redemptions/{redemption}/refunds",
            post(handlers::peer_refund),
        )
        .route(
            statements::PEER_STATEMENTS_PATH,
            post(handlers::peer_cosign),
        )
        .route(agreements::PEER_PATH, post(handlers::peer_approval))
}

#[cfg(test)]
mod tests {
    /// The layering of this module, as a check of its source: only [`super::handlers`] knows
    /// the HTTP error type; every step returns a `RedemptionError`, which `crate::problem`
    /// maps.
    #[test]
    fn only_the_handlers_name_the_http_error() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("agreements.rs", include_str!("agreements.rs")),
            ("payee.rs", include_str!("payee.rs")),
            ("payer.rs", include_str!("payer.rs")),
            ("quotes.rs", include_str!("quotes.rs")),
            ("reconcile.rs", include_str!("reconcile.rs")),
            ("redeem.rs", include_str!("redeem.rs")),
            ("refunds.rs", include_str!("refunds.rs")),
            ("statements.rs", include_str!("statements.rs")),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/redemption");
        let on_disk = std::fs::read_dir(&dir)
            .expect("read src/redemption")
            .count();
        assert_eq!(
            on_disk,
            files.len() + 1,
            "every file of {} but handlers.rs is checked",
            dir.display()
        );
        // Built from pieces, so that this test's own text does not match.
        let names = [["Api", "Error"].concat(), ["problem", "::"].concat()];
        for (name, text) in files {
            for n in &names {
                assert!(!text.contains(n.as_str()), "redemption/{name} names {n}");
            }
        }
        assert!(include_str!("handlers.rs").contains(names[0].as_str()));
    }
}
