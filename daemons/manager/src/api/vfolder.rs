//! (being written)

use axum::Router;

use super::ApiState;

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
}

/// The unsigned routes of this module (token-authorised transfer side channel).
pub fn public_routes() -> Router<ApiState> {
    Router::new()
}
