//! (being written)

use axum::Router;

use super::ApiState;

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
}
