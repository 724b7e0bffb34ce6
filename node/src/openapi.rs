//! The OpenAPI document, generated from the handlers and types (served at
//! `/v1/openapi.json`, copied to `spec/openapi.json` by a test that fails when they differ).

use utoipa::OpenApi;

use crate::federation_routes as fed;
use crate::{admin, api, log_routes, problem, reads};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Open loyalty ledger node",
        version = "1",
        description = "HTTP API of a brand node. See spec/api.md."
    ),
    paths(
        api::earn,
        api::earn_many,
        api::redeem,
        api::adjust,
        api::hold,
        api::post_hold,
        api::void_hold,
        api::refund,
        api::set_tiers,
        api::set_expiry,
        api::set_rate_card,
        api::set_fx_rate,
        api::authorise,
        reads::member,
        reads::history,
        reads::lots,
        reads::hold,
        reads::policy,
        admin::create_key,
        admin::list_keys,
        admin::revoke_key,
        admin::confirm,
        admin::status,
        log_routes::key,
        log_routes::time,
        log_routes::checkpoint,
        log_routes::entries,
        log_routes::receipt,
        log_routes::inclusion,
        log_routes::consistency,
        log_routes::checkpoints,
        log_routes::tile,
        fed::list,
        fed::add,
        fed::unfreeze,
        fed::mirrored_member,
        fed::evidence,
        fed::cosigned,
        fed::attestation,
        fed::verify_attestation,
        crate::redemption::agreements::approve,
        crate::redemption::quotes::quote,
        crate::redemption::quotes::get_quote,
        crate::redemption::payee::prepare,
        crate::redemption::payee::status,
        crate::redemption::payee::void,
        crate::redemption::payee::commit,
        crate::redemption::reconcile::reconciliation,
        crate::redemption::refunds::refund,
        crate::redemption::statements::cosign,
        crate::redemption::statements::list,
    ),
    components(schemas(problem::Problem))
)]
struct Doc;

/// The OpenAPI document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(Doc::openapi()).expect("the OpenAPI document serializes")
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
}
