//! plumb's HTTP face.
//!
//! One axum router serves the JSON API (`/api/v1/...`, described by
//! `/api/v1/openapi.json`), Git push webhooks (`/api/webhook`), Prometheus
//! metrics (`/metrics`), liveness (`/healthz`) and the web UI. Every API read
//! needs a valid bearer token and every write an admin one (401 without or
//! with a wrong token, 403 for the wrong role); the UI carries the token in a
//! `SameSite=Strict`, `HttpOnly` cookie, and cookie-authenticated writes must
//! also send `X-Requested-With: plumb`, which no cross-site form can. Tokens
//! are looked up by hash in the agent's store and never logged.
//!
//! This crate holds no reconcile logic; it calls [`plumb_agent::Agent`].

mod api;
mod auth;
mod ui;

use std::net::SocketAddr;

use axum::Router;
use plumb_agent::Agent;

pub use auth::AuthMode;

/// The complete router for an agent.
pub fn router(agent: Agent, auth: AuthMode) -> Router {
    let state = api::AppState {
        agent,
        auth,
        tokens: Default::default(),
    };
    api::routes(state.clone()).merge(ui::routes(state))
}

/// Serve `router` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Bind first (to report the address and fail early), then serve.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve on an already bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
