//! Bearer tokens and roles.
//!
//! Tokens are checked by hash against the agent's store. Verified tokens are
//! remembered for a few seconds ([`TokenCache`]), so that reads do not queue
//! behind the store's status and history writes while many Applications
//! sync; failures are never remembered, so a token made a moment ago by
//! `plumb token create` in another process works at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use plumb_agent::{Agent, Role};

/// How long a verified token is trusted without asking the store again.
const TOKEN_TTL: Duration = Duration::from_secs(5);

/// Recently verified tokens, keyed by hash (never by the token itself).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    seen: Mutex<HashMap<String, (Role, Instant)>>,
}

impl TokenCache {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Role, Instant)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn role(&self, agent: &Agent, token: &str) -> Result<Option<Role>, StatusCode> {
        let key = plumb_agent::store::token_hash(token);
        if let Some((role, at)) = self.seen().get(&key)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(Some(*role));
        }
        let role = agent
            .store()
            .token_role(token)
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        if let Some(r) = role {
            let mut seen = self.seen();
            if seen.len() >= 1024 {
                seen.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
            }
            seen.insert(key, (r, Instant::now()));
        }
        Ok(role)
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens required (the default).
    Tokens,
    /// Everyone is admin. Only behind an explicit flag.
    Disabled,
}

/// Cookie the UI keeps the token in.
pub const COOKIE: &str = "plumb_token";

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`.
    Header,
    /// The UI cookie.
    Cookie,
    /// No authentication in use.
    None,
}

/// The token a request presents, and how.
pub fn presented(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return Some((t.trim().to_string(), Via::Header));
    }
    let cookies = headers.get_all(header::COOKIE);
    for c in cookies.iter().filter_map(|c| c.to_str().ok()) {
        for part in c.split(';') {
            if let Some((k, v)) = part.trim().split_once('=')
                && k == COOKIE
                && !v.is_empty()
            {
                return Some((v.to_string(), Via::Cookie));
            }
        }
    }
    None
}

/// Check a request: `Ok(role)` or the status to answer with.
pub(crate) fn check(
    agent: &Agent,
    mode: AuthMode,
    tokens: &TokenCache,
    headers: &HeaderMap,
    write: bool,
) -> Result<(Role, Via), StatusCode> {
    if mode == AuthMode::Disabled {
        return Ok((Role::Admin, Via::None));
    }
    let Some((token, via)) = presented(headers) else {
        return Err(StatusCode::UNAUTHORIZED);
    };
    let role = tokens
        .role(agent, &token)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if write {
        if role != Role::Admin {
            return Err(StatusCode::FORBIDDEN);
        }
        // A cookie rides along with cross-site requests; a custom header cannot.
        if via == Via::Cookie
            && headers
                .get("x-requested-with")
                .and_then(|v| v.to_str().ok())
                != Some("plumb")
        {
            return Err(StatusCode::FORBIDDEN);
        }
    }
    Ok((role, via))
}
