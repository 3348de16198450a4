//! The JSON API.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use plumb_agent::{Agent, AgentError, ApplicationFilter, Page};
use plumb_model::{HealthStatus, SyncStatus};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::auth::{self, AuthMode};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub agent: Agent,
    pub auth: AuthMode,
    pub tokens: std::sync::Arc<auth::TokenCache>,
}

const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/webhook", post(webhook))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/applications", get(list))
        .route("/api/v1/applications/{name}", get(one))
        .route("/api/v1/applications/{name}/diff", get(diff))
        .route("/api/v1/applications/{name}/history", get(history))
        .route("/api/v1/applications/{name}/sync", post(sync))
        .route("/api/v1/applications/{name}/rollback", post(rollback))
        .route("/api/v1/applications/{name}/resume", post(resume))
        .route("/api/v1/applications/{name}/refresh", post(refresh))
        .route("/api/v1/events", get(events))
        .with_state(state)
}

/// An error as JSON.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": message.into(), "code": status.as_u16()})),
    )
        .into_response()
}

fn denied(status: StatusCode) -> Response {
    let message = match status {
        StatusCode::UNAUTHORIZED => "a valid token is required (Authorization: Bearer TOKEN)",
        StatusCode::FORBIDDEN => "this token may not do that (writes need an admin token)",
        _ => "authentication failed",
    };
    let mut r = error(status, message);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"plumb\""),
        );
    }
    r
}

fn agent_error(e: AgentError) -> Response {
    let status = match &e {
        AgentError::NotFound(_) => StatusCode::NOT_FOUND,
        AgentError::Invalid(_) | AgentError::Revision(_) => StatusCode::BAD_REQUEST,
        AgentError::Pipeline(_) | AgentError::SyncFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AgentError::Store(_) | AgentError::Load(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AgentError::Cluster(_) => StatusCode::BAD_GATEWAY,
    };
    (
        status,
        Json(json!({"error": e.to_string(), "hint": e.hint(), "code": status.as_u16()})),
    )
        .into_response()
}

/// The request's JSON body (an empty body is the default), or a 400 answer.
macro_rules! body {
    ($raw:expr) => {
        match body(&$raw) {
            Ok(b) => b,
            Err(r) => return *r,
        }
    };
}

macro_rules! authorize {
    ($state:expr, $headers:expr, $write:expr) => {
        if let Err(status) = auth::check(
            &$state.agent,
            $state.auth,
            &$state.tokens,
            &$headers,
            $write,
        ) {
            return denied(status);
        }
    };
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.agent.metrics().encode(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn webhook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    match plumb_agent::webhook::parse(&pairs, &body, s.agent.webhook_secret()) {
        Ok(push) => {
            let refreshed = s.agent.refresh_repository(&push.urls);
            Json(json!({"refreshed": refreshed, "ref": push.git_ref, "after": push.after}))
                .into_response()
        }
        Err(plumb_agent::webhook::WebhookError::BadSignature) => {
            error(StatusCode::UNAUTHORIZED, "signature does not verify")
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    name: Option<String>,
    sync: Option<String>,
    health: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

fn parse_sync(s: &str) -> Option<SyncStatus> {
    match s.to_ascii_lowercase().as_str() {
        "synced" => Some(SyncStatus::Synced),
        "outofsync" => Some(SyncStatus::OutOfSync),
        "unknown" => Some(SyncStatus::Unknown),
        _ => None,
    }
}

fn parse_health(s: &str) -> Option<HealthStatus> {
    match s.to_ascii_lowercase().as_str() {
        "healthy" => Some(HealthStatus::Healthy),
        "progressing" => Some(HealthStatus::Progressing),
        "degraded" => Some(HealthStatus::Degraded),
        "suspended" => Some(HealthStatus::Suspended),
        "missing" => Some(HealthStatus::Missing),
        "unknown" => Some(HealthStatus::Unknown),
        _ => None,
    }
}

/// Parse list filters; `Err` names the bad one.
pub(crate) fn filter_of(
    name: Option<String>,
    sync: Option<&str>,
    health: Option<&str>,
) -> Result<ApplicationFilter, String> {
    let sync = match sync.filter(|s| !s.is_empty()) {
        Some(s) => Some(
            parse_sync(s)
                .ok_or_else(|| format!("sync must be Synced, OutOfSync or Unknown, not {s:?}"))?,
        ),
        None => None,
    };
    let health = match health.filter(|s| !s.is_empty()) {
        Some(h) => Some(parse_health(h).ok_or_else(|| {
            format!("health must be Healthy, Progressing, Degraded, Suspended, Missing or Unknown, not {h:?}")
        })?),
        None => None,
    };
    Ok(ApplicationFilter {
        name: name.filter(|n| !n.is_empty()),
        sync,
        health,
    })
}

/// Largest page size.
pub(crate) const MAX_LIMIT: usize = 500;

async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    authorize!(s, headers, false);
    let filter = match filter_of(q.name, q.sync.as_deref(), q.health.as_deref()) {
        Ok(f) => f,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let page = Page {
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
    };
    let (items, total) = s.agent.list(&filter, page);
    Json(json!({"items": items, "total": total, "offset": page.offset, "limit": page.limit}))
        .into_response()
}

async fn one(State(s): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    authorize!(s, headers, false);
    reply(s.agent.get(&name))
}

#[derive(Debug, Deserialize)]
struct RevisionQuery {
    revision: Option<String>,
}

async fn diff(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<RevisionQuery>,
) -> Response {
    authorize!(s, headers, false);
    reply(s.agent.diff(&name, q.revision.as_deref()).await.map(|d| {
        let objects: Vec<_> = d
            .objects
            .iter()
            .map(|o| {
                json!({
                    "group": o.object.group, "kind": o.object.kind,
                    "namespace": o.object.namespace, "name": o.object.name,
                    "version": o.version, "state": o.state, "diff": o.diff,
                    "desired": o.desired, "live": o.live,
                })
            })
            .collect();
        json!({"application": d.application, "revision": d.revision, "inSync": d.in_sync(), "objects": objects})
    }))
}

async fn history(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authorize!(s, headers, false);
    reply(s.agent.history(&name).map(|h| json!({"items": h})))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    revision: Option<String>,
    prune: Option<bool>,
    #[serde(default)]
    dry_run: bool,
}

fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, Box<Response>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("request body: {e}"))))
}

/// The JSON of an agent call's result, or its error with a status and hint.
fn reply<T: serde::Serialize>(result: Result<T, AgentError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => agent_error(e),
    }
}

async fn sync(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Bytes,
) -> Response {
    authorize!(s, headers, true);
    let b: SyncBody = body!(raw);
    reply(
        s.agent
            .sync(&name, b.revision.as_deref(), b.prune, b.dry_run)
            .await,
    )
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    revision: String,
}

async fn rollback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Bytes,
) -> Response {
    authorize!(s, headers, true);
    let b: RollbackBody = body!(raw);
    reply(s.agent.rollback(&name, &b.revision).await)
}

async fn resume(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authorize!(s, headers, true);
    reply(
        s.agent
            .resume(&name)
            .map(|was| json!({"resumed": true, "wasSuspended": was})),
    )
}

async fn refresh(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authorize!(s, headers, true);
    match s.agent.refresh(&name) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"refreshing": name}))).into_response(),
        Err(e) => agent_error(e),
    }
}

async fn events(State(s): State<AppState>, headers: HeaderMap) -> Response {
    authorize!(s, headers, false);
    Sse::new(status_stream(&s.agent))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Status changes as server-sent events (`event: status`, data: the status
/// without per-object detail).
pub(crate) fn status_stream(
    agent: &Agent,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    BroadcastStream::new(agent.subscribe()).filter_map(|r| {
        let mut status = r.ok()?;
        status.objects.clear();
        let data = serde_json::to_string(&status).ok()?;
        Some(Ok(Event::default().event("status").data(data)))
    })
}
