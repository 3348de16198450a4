//! The web UI.

use axum::Router;

use crate::api::AppState;

pub(crate) fn routes(state: AppState) -> Router {
    Router::new().with_state(state)
}
