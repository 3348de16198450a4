//! The web UI.
//!
//! Pages are rendered on the server from askama templates that are compiled
//! into the binary, and one small script (`assets/ui.js`, embedded with the
//! stylesheet) does only what a page cannot do alone: follow status changes
//! over server-sent events, and drive the sync (with its dry-run preview),
//! rollback and refresh dialogs through the JSON API. Server rendering keeps
//! the list page's cost proportional to one page of Applications, whatever
//! their number, needs no JavaScript build, and leaves links, forms, tables
//! and `<dialog>`s to the browser, which makes the UI keyboard-navigable by
//! construction.
//!
//! The token is typed into a login form (a POST body, never a URL) and kept
//! in an `HttpOnly`, `SameSite=Strict` cookie the script cannot read; the
//! script's writes send `X-Requested-With: plumb` as [`crate::auth`] demands.
//! Every HTML answer carries a strict Content-Security-Policy (no inline
//! script or style), and values are HTML-escaped by askama. Diffs arrive with
//! Secret values already redacted by the engine.
//!
//! This module reads the agent only through [`plumb_agent::Agent`]'s public
//! methods and must not change anything itself: writes go through the API.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use plumb_agent::{AppStatus, HistoryEntry, Page, Phase, Role};
use plumb_kube::textdiff::LineKind;
use plumb_model::{HealthStatus, SyncStatus};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{AppState, MAX_LIMIT, filter_of};
use crate::auth::{self, AuthMode, COOKIE};

const CSS: &str = include_str!("../assets/ui.css");
const JS: &str = include_str!("../assets/ui.js");

/// Asset URLs carry a hash of their content, so browsers may cache them
/// forever and still never run a stale script after an upgrade.
static ASSET_URLS: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        format!("/ui/ui.css?v={:016x}", fnv(CSS.as_bytes())),
        format!("/ui/ui.js?v={:016x}", fnv(JS.as_bytes())),
    )
});

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Page sizes offered on the list page.
const PAGE_SIZES: [usize; 5] = [25, 50, 100, 250, 500];
const DEFAULT_PAGE_SIZE: usize = 50;
/// Lines of one object's unified diff shown before cutting it short.
const MAX_DIFF_LINES: usize = 2000;
/// Changed fields listed per object.
const MAX_FIELD_CHANGES: usize = 200;

pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/applications/{key}", get(app_page))
        .route("/applications/{key}/live", get(app_live))
        .route("/applications/{key}/diff", get(diff_fragment))
        .route("/ui/{asset}", get(asset))
        .with_state(state)
}

// ---- responses -------------------------------------------------------------

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a UI template failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>plumb</title><p>This page could not be rendered; the agent's log says why.</p>".into(),
            )
        }
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "ui.css" => (CSS, "text/css; charset=utf-8"),
        "ui.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// What every page's frame needs.
struct Chrome {
    css: &'static str,
    js: &'static str,
    /// Signed in with a token (so "Sign out" makes sense).
    signed_in: bool,
    /// `admin`, `read-only`, or `no authentication`.
    role: &'static str,
    can_write: bool,
}

impl Chrome {
    fn new(viewer: Option<Viewer>) -> Chrome {
        let (css, js) = (&ASSET_URLS.0, &ASSET_URLS.1);
        let (signed_in, role, can_write) = match viewer {
            None => (false, "", false),
            Some(Viewer::Open) => (false, "no authentication", true),
            Some(Viewer::Token(Role::Admin)) => (true, "admin", true),
            Some(Viewer::Token(Role::Readonly)) => (true, "read-only", false),
        };
        Chrome {
            css: css.as_str(),
            js: js.as_str(),
            signed_in,
            role,
            can_write,
        }
    }
}

/// Who is looking.
#[derive(Debug, Clone, Copy)]
enum Viewer {
    /// Authentication is disabled.
    Open,
    /// A token with this role.
    Token(Role),
}

/// The viewer, or the answer that sends them to the login page.
fn viewer(s: &AppState, headers: &HeaderMap, fragment: bool) -> Result<Viewer, Box<Response>> {
    if s.auth == AuthMode::Disabled {
        return Ok(Viewer::Open);
    }
    match auth::check(&s.agent, s.auth, &s.tokens, headers, false) {
        Ok((role, _)) => Ok(Viewer::Token(role)),
        Err(StatusCode::UNAUTHORIZED) if fragment => Err(Box::new(html(
            StatusCode::UNAUTHORIZED,
            "<p class=\"error\">Your session has ended; <a href=\"/login\">sign in</a> again.</p>"
                .into(),
        ))),
        Err(StatusCode::UNAUTHORIZED) => {
            let mut r = Redirect::to("/login").into_response();
            // A cookie that no longer works (the token was removed) is dropped.
            if auth::presented(headers).is_some() {
                r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
            }
            Err(Box::new(r))
        }
        Err(status) => Err(Box::new(error_page(
            status,
            "The token could not be checked; see the agent's log.",
        ))),
    }
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("plumb_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            chrome: Chrome::new(None),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.to_string(),
        },
    )
}

// ---- login -----------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: String,
}

async fn login_page(State(s): State<AppState>) -> Response {
    if s.auth == AuthMode::Disabled {
        return Redirect::to("/").into_response();
    }
    render(
        StatusCode::OK,
        &LoginPage {
            chrome: Chrome::new(None),
            error: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    if s.auth == AuthMode::Disabled {
        return Redirect::to("/").into_response();
    }
    let token = f.token.trim();
    let refuse = |message: &str| {
        render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                chrome: Chrome::new(None),
                error: message.to_string(),
            },
        )
    };
    // A cookie value cannot hold every character; real tokens never need them.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return refuse(
            "That is not a plumb token. Tokens look like plumb_0123…; `plumb token create` makes one.",
        );
    }
    match s.agent.store().token_role(token) {
        Ok(Some(_)) => {
            let mut r = Redirect::to("/").into_response();
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            match HeaderValue::from_str(&cookie) {
                Ok(v) => {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                    r
                }
                Err(_) => refuse("That token cannot be kept in a cookie."),
            }
        }
        Ok(None) => refuse(
            "This token is not known to this agent. Check for a typo, or create one with `plumb token create`.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            refuse("The agent could not check the token; see its log.")
        }
    }
}

async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

// ---- the list --------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
struct ListParams {
    q: Option<String>,
    sync: Option<String>,
    health: Option<String>,
    page: Option<usize>,
    per: Option<usize>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct Chip {
    label: &'static str,
    class: String,
    count: usize,
    href: String,
    current: bool,
}

struct Row {
    key: String,
    name: String,
    namespace: String,
    href: String,
    sync: String,
    health: String,
    phase: String,
    revision: String,
    source: String,
    destination: String,
    last_sync: String,
    suspended: bool,
    message: String,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    sync_choices: Vec<Choice>,
    health_choices: Vec<Choice>,
    per_choices: Vec<Choice>,
    filtered: bool,
    error: String,
    chips: Vec<Chip>,
    rows: Vec<Row>,
    total: usize,
    total_all: usize,
    from: usize,
    to: usize,
    page: usize,
    pages: usize,
    first: Option<String>,
    prev: Option<String>,
    next: Option<String>,
    last: Option<String>,
}

const SYNCS: [SyncStatus; 3] = [
    SyncStatus::Synced,
    SyncStatus::OutOfSync,
    SyncStatus::Unknown,
];
const HEALTHS: [HealthStatus; 6] = [
    HealthStatus::Healthy,
    HealthStatus::Progressing,
    HealthStatus::Degraded,
    HealthStatus::Suspended,
    HealthStatus::Missing,
    HealthStatus::Unknown,
];

fn list_href(q: &str, sync: &str, health: &str, per: usize, page: usize) -> String {
    let mut parts: Vec<(&str, String)> = Vec::new();
    if !q.is_empty() {
        parts.push(("q", q.to_string()));
    }
    if !sync.is_empty() {
        parts.push(("sync", sync.to_string()));
    }
    if !health.is_empty() {
        parts.push(("health", health.to_string()));
    }
    if per != DEFAULT_PAGE_SIZE {
        parts.push(("per", per.to_string()));
    }
    if page > 1 {
        parts.push(("page", page.to_string()));
    }
    if parts.is_empty() {
        return "/".into();
    }
    let query: Vec<String> = parts
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("/?{}", query.join("&"))
}

async fn list_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Response {
    let who = match viewer(&s, &headers, false) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let q = p.q.unwrap_or_default().trim().to_string();
    let mut sync = p.sync.unwrap_or_default();
    let mut health = p.health.unwrap_or_default();
    let per = p
        .per
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .min(MAX_LIMIT);
    let (filter, error) = match filter_of(Some(q.clone()), Some(&sync), Some(&health)) {
        Ok(f) => (f, String::new()),
        Err(m) => {
            sync.clear();
            health.clear();
            (
                plumb_agent::ApplicationFilter {
                    name: Some(q.clone()).filter(|n| !n.is_empty()),
                    ..Default::default()
                },
                m,
            )
        }
    };
    // Canonical spelling, so chips and selects match whatever was typed.
    let sync = filter.sync.map(|x| x.to_string()).unwrap_or_default();
    let health = filter.health.map(|x| x.to_string()).unwrap_or_default();
    let (_, total) = s.agent.list(
        &filter,
        Page {
            offset: 0,
            limit: 0,
        },
    );
    let pages = total.div_ceil(per).max(1);
    let page = p.page.unwrap_or(1).clamp(1, pages);
    let offset = (page - 1) * per;
    let (items, _) = s.agent.list(&filter, Page { offset, limit: per });

    // Counts for the chips: every status among the Applications the search
    // matches, whatever the other filters say.
    let by_name = plumb_agent::ApplicationFilter {
        name: filter.name.clone(),
        ..Default::default()
    };
    let count = |f: plumb_agent::ApplicationFilter| {
        s.agent
            .list(
                &f,
                Page {
                    offset: 0,
                    limit: 0,
                },
            )
            .1
    };
    let total_all = s.agent.len();
    let mut chips = Vec::new();
    for x in SYNCS {
        let n = count(plumb_agent::ApplicationFilter {
            sync: Some(x),
            ..by_name.clone()
        });
        let v = x.to_string();
        let current = v == sync;
        chips.push(Chip {
            label: sync_label(x),
            class: format!("sync-{v}"),
            count: n,
            href: list_href(&q, if current { "" } else { &v }, &health, per, 1),
            current,
        });
    }
    for x in HEALTHS {
        let n = count(plumb_agent::ApplicationFilter {
            health: Some(x),
            ..by_name.clone()
        });
        if n == 0 && x != HealthStatus::Healthy {
            continue;
        }
        let v = x.to_string();
        let current = v == health;
        chips.push(Chip {
            label: health_label(x),
            class: format!("health-{v}"),
            count: n,
            href: list_href(&q, &sync, if current { "" } else { &v }, per, 1),
            current,
        });
    }
    let choices = |values: Vec<String>, labels: Vec<String>, current: &str| {
        values
            .into_iter()
            .zip(labels)
            .map(|(value, label)| Choice {
                selected: value == current,
                value,
                label,
            })
            .collect::<Vec<_>>()
    };
    let sync_choices = choices(
        std::iter::once(String::new())
            .chain(SYNCS.iter().map(|x| x.to_string()))
            .collect(),
        std::iter::once("any".to_string())
            .chain(SYNCS.iter().map(|x| sync_label(*x).to_string()))
            .collect(),
        &sync,
    );
    let health_choices = choices(
        std::iter::once(String::new())
            .chain(HEALTHS.iter().map(|x| x.to_string()))
            .collect(),
        std::iter::once("any".to_string())
            .chain(HEALTHS.iter().map(|x| health_label(*x).to_string()))
            .collect(),
        &health,
    );
    let per_choices = PAGE_SIZES
        .iter()
        .map(|n| Choice {
            value: n.to_string(),
            label: n.to_string(),
            selected: *n == per,
        })
        .collect();
    let rows: Vec<Row> = items.iter().map(row).collect();
    let href = |page: usize| list_href(&q, &sync, &health, per, page);
    let t = ListPage {
        chrome: Chrome::new(Some(who)),
        filtered: !q.is_empty() || !sync.is_empty() || !health.is_empty(),
        sync_choices,
        health_choices,
        per_choices,
        error,
        chips,
        total,
        total_all,
        from: if rows.is_empty() { 0 } else { offset + 1 },
        to: offset + rows.len(),
        page,
        pages,
        first: (page > 2).then(|| href(1)),
        prev: (page > 1).then(|| href(page - 1)),
        next: (page < pages).then(|| href(page + 1)),
        last: (page + 1 < pages).then(|| href(pages)),
        rows,
        q,
    };
    render(StatusCode::OK, &t)
}

fn sync_label(s: SyncStatus) -> &'static str {
    match s {
        SyncStatus::Synced => "Synced",
        SyncStatus::OutOfSync => "OutOfSync",
        SyncStatus::Unknown => "Unknown",
    }
}

fn health_label(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => "Healthy",
        HealthStatus::Suspended => "Suspended",
        HealthStatus::Progressing => "Progressing",
        HealthStatus::Unknown => "Unknown",
        HealthStatus::Missing => "Missing",
        HealthStatus::Degraded => "Degraded",
    }
}

fn phase_label(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "pending",
        Phase::Idle => "",
        Phase::Syncing => "syncing",
        Phase::Failed => "failed",
    }
}

fn short(rev: &str) -> String {
    match plumb_model::Revision::parse(rev) {
        Ok(r) => r.short(),
        Err(_) => rev.to_string(),
    }
}

fn repo_name(url: &str) -> &str {
    let u = url.trim_end_matches('/');
    let last = u.rsplit(['/', ':']).next().unwrap_or(u);
    last.strip_suffix(".git").unwrap_or(last)
}

fn row(s: &AppStatus) -> Row {
    Row {
        key: s.key.clone(),
        name: s.name.clone(),
        namespace: s.namespace.clone().unwrap_or_default(),
        href: app_href(&s.key),
        sync: s.sync.to_string(),
        health: s.health.to_string(),
        phase: phase_label(s.phase).to_string(),
        revision: s.revision.as_deref().map(short).unwrap_or_default(),
        source: format!(
            "{} {}@{}",
            repo_name(&s.repo_url),
            s.path,
            s.target_revision
        ),
        destination: s.destination_namespace.clone(),
        last_sync: s.last_sync.map(utc).unwrap_or_default(),
        suspended: s.suspended.is_some(),
        message: clip(&s.message, 200),
    }
}

fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn app_href(key: &str) -> String {
    format!("/applications/{}", encode(key))
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---- one Application -------------------------------------------------------

struct ObjectRow {
    name: String,
    namespace: String,
    version: String,
    sync: String,
    health: String,
    message: String,
}

struct KindGroup {
    kind: String,
    count: usize,
    out_of_sync: usize,
    health: String,
    objects: Vec<ObjectRow>,
}

struct HistoryRow {
    id: u64,
    revision: String,
    short: String,
    message: String,
    author: String,
    commit_time: String,
    synced_at: String,
    trigger: String,
    result: String,
    error: String,
    counts: String,
    current: bool,
}

/// Everything the Application page shows that changes while it is open.
struct AppView {
    key: String,
    name: String,
    href: String,
    sync: String,
    health: String,
    phase: String,
    revision: String,
    git_revision: String,
    target_revision: String,
    repo_url: String,
    path: String,
    destination: String,
    automated: bool,
    self_heal: bool,
    prune: bool,
    suspended: String,
    message: String,
    denials: Vec<String>,
    secret_findings: Vec<String>,
    last_sync: String,
    last_reconcile: String,
    total: usize,
    out_of_sync: usize,
    groups: Vec<KindGroup>,
    history: Vec<HistoryRow>,
    history_error: String,
    can_write: bool,
}

fn app_view(s: &AppStatus, history: Result<Vec<HistoryEntry>, String>, can_write: bool) -> AppView {
    let mut by_kind: BTreeMap<String, Vec<&plumb_kube::ObjectStatus>> = BTreeMap::new();
    for o in &s.objects {
        let kind = if o.object.group.is_empty() {
            o.object.kind.clone()
        } else {
            format!("{}.{}", o.object.kind, o.object.group)
        };
        by_kind.entry(kind).or_default().push(o);
    }
    let groups = by_kind
        .into_iter()
        .map(|(kind, mut objs)| {
            objs.sort_by(|a, b| {
                (a.object.namespace.as_deref(), a.object.name.as_str())
                    .cmp(&(b.object.namespace.as_deref(), b.object.name.as_str()))
            });
            KindGroup {
                kind,
                count: objs.len(),
                out_of_sync: objs.iter().filter(|o| o.sync != SyncStatus::Synced).count(),
                health: HealthStatus::roll_up(objs.iter().map(|o| o.health)).to_string(),
                objects: objs
                    .iter()
                    .map(|o| ObjectRow {
                        name: o.object.name.clone(),
                        namespace: o.object.namespace.clone().unwrap_or_default(),
                        version: o.version.clone(),
                        sync: o.sync.to_string(),
                        health: o.health.to_string(),
                        message: o.message.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let (history, history_error) = match history {
        Ok(h) => (
            h.iter()
                .map(|e| HistoryRow {
                    id: e.id,
                    short: short(&e.revision),
                    current: s.revision.as_deref() == Some(e.revision.as_str()),
                    revision: e.revision.clone(),
                    message: e.message.clone(),
                    author: e.author.clone(),
                    commit_time: if e.commit_time > 0 {
                        utc(e.commit_time)
                    } else {
                        String::new()
                    },
                    synced_at: utc(e.synced_at),
                    trigger: e.trigger.clone(),
                    result: e.result.clone(),
                    error: clip(&e.error, 400),
                    counts: counts_text(&e.counts),
                })
                .collect(),
            String::new(),
        ),
        Err(e) => (Vec::new(), e),
    };
    AppView {
        key: s.key.clone(),
        name: s.name.clone(),
        href: app_href(&s.key),
        sync: s.sync.to_string(),
        health: s.health.to_string(),
        phase: phase_label(s.phase).to_string(),
        revision: s.revision.clone().unwrap_or_default(),
        git_revision: s.git_revision.clone().unwrap_or_default(),
        target_revision: s.target_revision.clone(),
        repo_url: s.repo_url.clone(),
        path: s.path.clone(),
        destination: format!("{} {}", s.destination_server, s.destination_namespace),
        automated: s.automated,
        self_heal: s.self_heal,
        prune: s.prune,
        suspended: s.suspended.clone().unwrap_or_default(),
        message: if s.denials.is_empty() && s.secret_findings.is_empty() {
            s.message.clone()
        } else {
            String::new()
        },
        denials: s.denials.clone(),
        secret_findings: s.secret_findings.clone(),
        last_sync: s.last_sync.map(utc).unwrap_or_default(),
        last_reconcile: s.last_reconcile.map(utc).unwrap_or_default(),
        total: s.resources.total,
        out_of_sync: s.resources.out_of_sync,
        groups,
        history,
        history_error,
        can_write,
    }
}

fn counts_text(c: &plumb_model::sync::ActionCounts) -> String {
    let parts: Vec<String> = [
        (c.created, "created"),
        (c.configured, "configured"),
        (c.pruned, "pruned"),
        (c.skipped, "skipped"),
        (c.failed, "failed"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join(", ")
    }
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    chrome: Chrome,
    v: AppView,
}

#[derive(Template)]
#[template(path = "app_live.html")]
struct AppLive {
    v: AppView,
}

fn load(s: &AppState, key: &str, can_write: bool) -> Result<AppView, Box<Response>> {
    let status = s.agent.get(key).map_err(|e| {
        Box::new(match e {
            plumb_agent::AgentError::NotFound(_) => error_page(
                StatusCode::NOT_FOUND,
                &format!("There is no Application named {key:?}."),
            ),
            other => error_page(StatusCode::BAD_REQUEST, &other.to_string()),
        })
    })?;
    let history = s.agent.history(&status.key).map_err(|e| e.to_string());
    Ok(app_view(&status, history, can_write))
}

async fn app_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let who = match viewer(&s, &headers, false) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let chrome = Chrome::new(Some(who));
    match load(&s, &key, chrome.can_write) {
        Ok(v) => render(StatusCode::OK, &AppPage { chrome, v }),
        Err(r) => *r,
    }
}

async fn app_live(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let who = match viewer(&s, &headers, true) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match load(&s, &key, Chrome::new(Some(who)).can_write) {
        Ok(v) => render(StatusCode::OK, &AppLive { v }),
        Err(r) => *r,
    }
}

// ---- the diff --------------------------------------------------------------

struct DiffLine {
    class: &'static str,
    text: String,
}

struct FieldChange {
    path: String,
    live: String,
    git: String,
}

struct ObjectDiffView {
    title: String,
    anchor: String,
    state: String,
    fields: Vec<FieldChange>,
    more_fields: usize,
    lines: Vec<DiffLine>,
    cut: usize,
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffFragment {
    revision: String,
    objects: Vec<ObjectDiffView>,
    unchanged: usize,
    error: String,
}

#[derive(Debug, Deserialize, Default)]
struct DiffParams {
    revision: Option<String>,
}

async fn diff_fragment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(p): Query<DiffParams>,
) -> Response {
    if let Err(r) = viewer(&s, &headers, true) {
        return *r;
    }
    let revision = p.revision.filter(|r| !r.trim().is_empty());
    let t = match s.agent.diff(&key, revision.as_deref()).await {
        Ok(report) => {
            let unchanged = report
                .objects
                .iter()
                .filter(|o| o.state == "unchanged")
                .count();
            DiffFragment {
                revision: report.revision.short(),
                objects: report
                    .objects
                    .iter()
                    .filter(|o| o.state != "unchanged")
                    .map(object_diff_view)
                    .collect(),
                unchanged,
                error: String::new(),
            }
        }
        Err(e) => DiffFragment {
            revision: String::new(),
            objects: Vec::new(),
            unchanged: 0,
            error: e.to_string(),
        },
    };
    render(StatusCode::OK, &t)
}

fn object_diff_view(o: &plumb_kube::ObjectDiff) -> ObjectDiffView {
    let title = o.object.to_string();
    let mut fields = Vec::new();
    changed_fields(
        &mut String::new(),
        o.live.as_ref(),
        o.desired.as_ref(),
        &mut fields,
    );
    let more_fields = fields.len().saturating_sub(MAX_FIELD_CHANGES);
    fields.truncate(MAX_FIELD_CHANGES);
    let all: Vec<&str> = o.diff.lines().collect();
    let cut = all.len().saturating_sub(MAX_DIFF_LINES);
    let lines = all
        .iter()
        .take(MAX_DIFF_LINES)
        .map(|l| DiffLine {
            class: match LineKind::of(l) {
                LineKind::File => "file",
                LineKind::Added => "add",
                LineKind::Removed => "del",
                LineKind::Hunk => "hunk",
                LineKind::Context => "ctx",
            },
            text: (*l).to_string(),
        })
        .collect();
    ObjectDiffView {
        anchor: format!("obj-{:016x}", fnv(title.as_bytes())),
        title,
        state: o.state.to_string(),
        fields,
        more_fields,
        lines,
        cut,
    }
}

/// Every leaf where `live` and `desired` differ, as dotted paths.
fn changed_fields(
    path: &mut String,
    live: Option<&Value>,
    desired: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    if out.len() > MAX_FIELD_CHANGES || live == desired {
        return;
    }
    let len = path.len();
    match (live, desired) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                changed_fields(path, a.get(k), b.get(k), out);
                path.truncate(len);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                path.push_str(&format!("[{i}]"));
                changed_fields(path, a.get(i), b.get(i), out);
                path.truncate(len);
            }
        }
        // A whole object added or removed is one change; the text diff shows it.
        _ => out.push(FieldChange {
            path: if path.is_empty() {
                "(whole object)".into()
            } else {
                path.clone()
            },
            live: leaf(live),
            git: leaf(desired),
        }),
    }
}

fn leaf(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => clip(s, 120),
        Some(Value::Object(m)) => format!("{{{} fields}}", m.len()),
        Some(Value::Array(a)) => format!("[{} items]", a.len()),
        Some(other) => clip(&other.to_string(), 120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_fields_name_paths_and_both_values() {
        let live = json!({"data": {"a": "1", "b": "x"}, "spec": {"ports": [{"port": 80}]}});
        let git =
            json!({"data": {"a": "2", "b": "x", "c": "new"}, "spec": {"ports": [{"port": 81}]}});
        let mut out = Vec::new();
        changed_fields(&mut String::new(), Some(&live), Some(&git), &mut out);
        let got: Vec<(String, String, String)> =
            out.into_iter().map(|f| (f.path, f.live, f.git)).collect();
        assert_eq!(
            got,
            vec![
                ("data.a".into(), "1".into(), "2".into()),
                ("data.c".into(), "(absent)".into(), "new".into()),
                ("spec.ports[0].port".into(), "80".into(), "81".into()),
            ]
        );
    }

    #[test]
    fn urls_and_times() {
        assert_eq!(encode("argocd/my app"), "argocd%2Fmy%20app");
        assert_eq!(app_href("argocd/x"), "/applications/argocd%2Fx");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            short("0123456789abcdef,fedcba9876543210"),
            "0123456,fedcba9"
        );
        assert_eq!(
            repo_name("https://example.com/org/k8s-manifests.git"),
            "k8s-manifests"
        );
        assert_eq!(repo_name("git@example.com:org/app.git"), "app");
        assert_eq!(
            list_href("a b", "", "Healthy", 50, 2),
            "/?q=a%20b&health=Healthy&page=2"
        );
        assert_eq!(list_href("", "", "", 50, 1), "/");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 5), "hi");
    }
}
