//! The HTTP API and the UI's server side, over real HTTP, against an agent on
//! the real control plane with real Git repositories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use plumb_model::{HealthStatus, SyncStatus};
use plumb_server::AuthMode;
use plumb_testenv::git::GitRepo;
use plumb_testenv::testenv;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use serde_json::{Value, json};

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A namespace, a repository with `file` committed, and an agent serving
/// the Application `web` on it; the commit is returned last.
async fn serve_app(
    prefix: &str,
    policy: &str,
    file: (&str, String),
) -> (
    plumb_testenv::TestNamespace,
    GitRepo,
    Fixture,
    Served,
    String,
) {
    let ns = testenv().namespace(prefix).await;
    let repo = GitRepo::new();
    repo.write(file.0, file.1);
    let c1 = repo.commit("first");
    let f = Fixture::new();
    f.write_app(
        "web.yaml",
        &application("web", &repo, "app", ns.name(), policy),
    );
    let served = Served::start(f.config(), AuthMode::Tokens).await;
    (ns, repo, f, served, c1)
}

async fn one_app(
    prefix: &str,
    policy: &str,
) -> (
    plumb_testenv::TestNamespace,
    GitRepo,
    Fixture,
    Served,
    String,
) {
    let app = serve_app(prefix, policy, ("app/a.yaml", cm("a", "1"))).await;
    wait_for(
        &app.3.agent,
        "web",
        "first reconcile",
        Duration::from_secs(60),
        reconciled,
    )
    .await;
    app
}

#[tokio::test]
async fn tokens_roles_and_the_ui_cookie() {
    let (ns, _repo, _f, s, c1) = one_app("api-auth", AUTO).await;
    wait_for(
        &s.agent,
        "web",
        "sync",
        Duration::from_secs(60),
        synced_at(&c1),
    )
    .await;
    let http = http();
    let list = s.url("/api/v1/applications");
    let dry = s.url("/api/v1/applications/web/sync");

    // Liveness needs nothing.
    let r = http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Reads: no token or a wrong one is 401 (with a challenge), any valid one is 200.
    let r = http.get(&list).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 401);
    let r = http
        .get(&list)
        .header(AUTHORIZATION, bearer("plumb_wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for t in [&s.readonly, &s.admin] {
        let r = http
            .get(&list)
            .header(AUTHORIZATION, bearer(t))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    // Writes: 401 without a valid token, 403 for a read-only one, admin passes.
    let body = json!({"dryRun": true});
    let r = http.post(&dry).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(&dry)
        .header(AUTHORIZATION, bearer("nope"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for path in ["sync", "rollback", "resume", "refresh"] {
        let r = http
            .post(s.url(&format!("/api/v1/applications/web/{path}")))
            .header(AUTHORIZATION, bearer(&s.readonly))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{path} with a read-only token"
        );
    }
    let r = http
        .post(&dry)
        .header(AUTHORIZATION, bearer(&s.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["revision"], c1);

    // The UI's cookie: reads work; writes need X-Requested-With as well,
    // which no cross-site form can send.
    let cookie = format!("plumb_token={}", s.admin);
    let r = http
        .get(&list)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(&dry)
        .header(COOKIE, &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&dry)
        .header(COOKIE, &cookie)
        .header("X-Requested-With", "plumb")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ro_cookie = format!("plumb_token={}", s.readonly);
    let r = http
        .post(&dry)
        .header(COOKIE, &ro_cookie)
        .header("X-Requested-With", "plumb")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The UI: pages send strangers to the login form...
    let r = http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = http.get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"token\"") && page.contains("method=\"post\""));
    // ...refuse a wrong token without setting a cookie...
    let r = http
        .post(s.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=plumb_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("not known to this agent"));
    // ...and keep a right one in an HttpOnly, SameSite=Strict cookie, never in a URL.
    let r = http
        .post(s.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={}", s.readonly))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.starts_with(&format!("plumb_token={};", s.readonly)),
        "{set}"
    );
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let r = http
        .get(s.url("/"))
        .header(COOKIE, &ro_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        !page.contains(&s.readonly),
        "the token must not appear in the page"
    );
    assert!(
        page.contains(&format!("data-key=\"{}/web\"", ns.name())),
        "{page}"
    );
    assert!(page.contains("badge sync-Synced"), "{page}");
    assert!(page.contains("read-only"));
    // A read-only viewer gets no write buttons.
    let r = http
        .get(s.url(&format!("/applications/{}%2Fweb", ns.name())))
        .header(COOKIE, &ro_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(!page.contains("id=\"btn-sync\""));
    assert!(page.contains("Read-only"));
    let r = http
        .get(s.url(&format!("/applications/{}%2Fweb", ns.name())))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("id=\"btn-sync\"") && page.contains("Roll back to #1"),
        "{page}"
    );
    let r = http
        .get(s.url("/applications/nothing-here"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A stale cookie is dropped and sends the browser back to the login form.
    let r = http
        .get(s.url("/"))
        .header(COOKIE, "plumb_token=plumb_stale")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // Signing out clears the cookie.
    let r = http
        .post(s.url("/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn list_pages_and_filters() {
    let ns = testenv().namespace("api-list").await;
    let repo = GitRepo::new();
    let names = [
        "alpha-1", "alpha-2", "alpha-3", "beta-1", "beta-2", "beta-3",
    ];
    for n in names {
        repo.write(&format!("{n}/cm.yaml"), cm(n, "1"));
    }
    let c1 = repo.commit("six apps");
    let f = Fixture::new();
    for n in names {
        let policy = if n.starts_with("alpha") { AUTO } else { MANUAL };
        f.write_app(
            &format!("{n}.yaml"),
            &application(n, &repo, n, ns.name(), policy),
        );
    }
    let s = Served::start(f.config(), AuthMode::Tokens).await;
    for n in names {
        if n.starts_with("alpha") {
            wait_for(&s.agent, n, "sync", Duration::from_secs(60), synced_at(&c1)).await;
        } else {
            wait_for(&s.agent, n, "reconcile", Duration::from_secs(60), |st| {
                reconciled(st) && st.sync == SyncStatus::OutOfSync
            })
            .await;
        }
    }
    let http = http();
    let get = |q: &'static str| {
        let http = http.clone();
        let url = s.url(&format!("/api/v1/applications{q}"));
        let token = s.readonly.clone();
        async move {
            let r = http
                .get(url)
                .header(AUTHORIZATION, bearer(&token))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let item_names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };

    let (st, v) = get("").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["total"], 6);
    assert_eq!(v["limit"], 50);
    assert_eq!(item_names(&v), names);
    assert!(
        v["items"][0]
            .get("objects")
            .is_none_or(|o| o.as_array().unwrap().is_empty())
    );

    let (_, v) = get("?limit=2").await;
    assert_eq!(item_names(&v), ["alpha-1", "alpha-2"]);
    assert_eq!(v["total"], 6);
    let (_, v) = get("?limit=2&offset=4").await;
    assert_eq!(item_names(&v), ["beta-2", "beta-3"]);
    let (_, v) = get("?offset=10").await;
    assert_eq!(item_names(&v), Vec::<String>::new());
    assert_eq!(v["total"], 6);
    let (_, v) = get("?limit=0").await;
    assert_eq!(v["limit"], 1);
    let (_, v) = get("?limit=100000").await;
    assert_eq!(v["limit"], 500);

    let (_, v) = get("?name=BETA").await;
    assert_eq!(item_names(&v), ["beta-1", "beta-2", "beta-3"]);
    let (_, v) = get("?sync=OutOfSync").await;
    assert_eq!(item_names(&v), ["beta-1", "beta-2", "beta-3"]);
    let (_, v) = get("?sync=synced").await;
    assert_eq!(item_names(&v), ["alpha-1", "alpha-2", "alpha-3"]);
    let (_, v) = get("?health=Missing").await;
    assert_eq!(item_names(&v), ["beta-1", "beta-2", "beta-3"]);
    let (_, v) = get("?health=Healthy&name=2").await;
    assert_eq!(item_names(&v), ["alpha-2"]);
    let (_, v) = get("?sync=Synced&health=Missing").await;
    assert_eq!(v["total"], 0);

    let (st, v) = get("?sync=Drifting").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("Drifting"), "{v}");
    let (st, _) = get("?health=fine").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // The list page filters and pages on the server, the same way.
    let cookie = format!("plumb_token={}", s.readonly);
    let page = |q: &'static str| {
        let http = http.clone();
        let url = s.url(q);
        let cookie = cookie.clone();
        async move {
            let r = http.get(url).header(COOKIE, cookie).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let rows = |html: &str| -> Vec<String> {
        html.split(&format!("<tr data-key=\"{}/", ns.name()))
            .skip(1)
            .map(|r| r.split('"').next().unwrap().to_string())
            .collect()
    };
    let html = page("/").await;
    assert_eq!(rows(&html), names);
    assert!(
        html.contains("OutOfSync <b>3</b>") && html.contains("Synced <b>3</b>"),
        "{html}"
    );
    let html = page("/?per=25&q=alpha&sync=Synced").await;
    assert_eq!(rows(&html), ["alpha-1", "alpha-2", "alpha-3"]);
    let html = page("/?health=Missing").await;
    assert_eq!(rows(&html), ["beta-1", "beta-2", "beta-3"]);
    let html = page("/?per=25&page=9").await;
    assert_eq!(
        rows(&html).len(),
        6,
        "a page past the end shows the last page"
    );
    let html = page("/?sync=nonsense").await;
    assert!(html.contains("role=\"alert\"") && html.contains("nonsense"));
    let health = HealthStatus::Healthy.to_string();
    assert!(html.contains(&format!("health-{health}")));
}

#[tokio::test]
async fn every_documented_path_answers() {
    let (_ns, repo, _f, s, c1) = one_app("api-paths", AUTO).await;
    wait_for(
        &s.agent,
        "web",
        "sync",
        Duration::from_secs(60),
        synced_at(&c1),
    )
    .await;
    repo.write("app/a.yaml", cm("a", "2"));
    let c2 = repo.commit("second");
    s.agent.refresh("web").unwrap();
    wait_for(
        &s.agent,
        "web",
        "second sync",
        Duration::from_secs(60),
        synced_at(&c2),
    )
    .await;

    let http = http();
    let doc: Value = http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut answered = Vec::new();
    // Resume last: rollback pauses automated sync, resume lifts it.
    let mut calls: Vec<(String, String)> = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            calls.push((method.clone(), path.clone()));
        }
    }
    calls.sort_by_key(|(_, p)| p.ends_with("/resume"));
    for (method, path) in calls {
        let url = s.url(&path.replace("{name}", "web"));
        let documented: Vec<u16> = paths[&path][&method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let req = match method.as_str() {
            "get" => http.get(&url),
            "post" => http.post(&url),
            other => panic!("undocumented method {other}"),
        }
        .header(AUTHORIZATION, bearer(&s.admin));
        let req = if path.ends_with("/sync") {
            req.json(&json!({"dryRun": true, "prune": false}))
        } else if path.ends_with("/rollback") {
            req.json(&json!({"revision": c1}))
        } else if path == "/api/webhook" {
            req.header("X-GitHub-Event", "push")
                .json(&json!({"ref": "refs/heads/main", "after": c2, "repository": {"clone_url": repo.url()}}))
        } else {
            req
        };
        let resp = if path == "/api/v1/events" {
            // A stream: the headers are the answer.
            let r = req.send().await.unwrap();
            assert_eq!(r.headers()["content-type"], "text/event-stream");
            r.status()
        } else {
            req.send().await.unwrap().status()
        };
        assert!(
            resp.is_success() && documented.contains(&resp.as_u16()),
            "{method} {path}: {resp} (documented: {documented:?})"
        );
        answered.push(format!("{method} {path}"));
    }
    assert_eq!(answered.len(), 13, "{answered:?}");
    // The rollback took effect, and resume lifted it.
    let h: Value = http
        .get(s.url("/api/v1/applications/web/history"))
        .header(AUTHORIZATION, bearer(&s.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rollback = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["trigger"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback in the history: {h}"));
    assert_eq!(rollback["revision"], c1);
    assert_eq!(rollback["message"], "first");
    assert_eq!(rollback["author"], "Alice Example");

    // Undocumented paths and methods are refused, not answered by accident.
    let r = http
        .get(s.url("/api/v1/nothing"))
        .header(AUTHORIZATION, bearer(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .delete(s.url("/api/v1/applications/web"))
        .header(AUTHORIZATION, bearer(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Read server-sent events until `f` accepts one, or time runs out.
async fn next_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event == "status" {
                let v: Value = serde_json::from_str(&data).unwrap();
                if f(&v) {
                    return v;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching event within {timeout:?}");
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            Ok(None) => panic!("the event stream ended"),
            Err(_) => panic!("no matching event within {timeout:?}"),
        }
    }
}

#[tokio::test]
async fn events_stream_status_changes() {
    let (ns, _repo, _f, s, c1) = one_app("api-events", AUTO_NO_HEAL).await;
    wait_for(
        &s.agent,
        "web",
        "sync",
        Duration::from_secs(60),
        synced_at(&c1),
    )
    .await;
    let http = http();
    let r = http.get(s.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(s.url("/api/v1/events"))
        .header(AUTHORIZATION, bearer(&s.readonly))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = r.bytes_stream();
    let mut buf = String::new();

    // Someone edits the object in the cluster: the stream says OutOfSync.
    let cms: Api<ConfigMap> = Api::namespaced(testenv().client().await, ns.name());
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "edited"}})),
    )
    .await
    .unwrap();
    let ev = next_event(&mut stream, &mut buf, Duration::from_secs(30), |v| {
        v["key"] == format!("{}/web", ns.name()).as_str() && v["sync"] == "OutOfSync"
    })
    .await;
    assert_eq!(ev["name"], "web");
    assert!(
        ev.get("objects")
            .is_none_or(|o| o.as_array().unwrap().is_empty())
    );

    // A sync through the API: the stream says Syncing, then Synced.
    let r = http
        .post(s.url("/api/v1/applications/web/sync"))
        .header(AUTHORIZATION, bearer(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    next_event(&mut stream, &mut buf, Duration::from_secs(30), |v| {
        v["key"] == format!("{}/web", ns.name()).as_str() && v["sync"] == "Synced"
    })
    .await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "1");
}

#[tokio::test]
async fn without_auth_only_behind_the_flag() {
    let ns = testenv().namespace("api-noauth").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.commit("first");
    let f = Fixture::new();
    f.write_app(
        "web.yaml",
        &application("web", &repo, "app", ns.name(), MANUAL),
    );
    let s = Served::start(f.config(), AuthMode::Disabled).await;
    wait_for(
        &s.agent,
        "web",
        "reconcile",
        Duration::from_secs(60),
        reconciled,
    )
    .await;
    let http = http();
    let r = http
        .get(s.url("/api/v1/applications"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(s.url("/api/v1/applications/web/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("no authentication"));
    let r = http.get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The same agent with tokens on refuses the same requests.
    s.agent.shutdown(Duration::from_secs(10)).await;
    drop(s);
    let s = Served::start(f.config(), AuthMode::Tokens).await;
    let r = http
        .post(s.url("/api/v1/applications/web/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secret_values_never_reach_the_diff() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  password: {}\n  user: {}\n",
        b64("hunter2-in-git"),
        b64("admin-user")
    );
    let (ns, _repo, _f, s, c1) =
        serve_app("api-secret", AUTO_NO_HEAL, ("app/s.yaml", secret)).await;
    wait_for(
        &s.agent,
        "web",
        "sync",
        Duration::from_secs(60),
        synced_at(&c1),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(testenv().client().await, ns.name());
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": b64("changed-in-cluster")}})),
        )
        .await
        .unwrap();
    wait_for(&s.agent, "web", "drift", Duration::from_secs(30), |st| {
        st.sync == SyncStatus::OutOfSync
    })
    .await;
    let http = http();
    let api = http
        .get(s.url("/api/v1/applications/web/diff"))
        .header(AUTHORIZATION, bearer(&s.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ui = http
        .get(s.url("/applications/web/diff"))
        .header(COOKIE, format!("plumb_token={}", s.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&api, &ui] {
        for secret in ["hunter2-in-git", "changed-in-cluster", "admin-user"] {
            assert!(
                !text.contains(secret) && !text.contains(&b64(secret)),
                "{secret} leaked: {text}"
            );
        }
    }
    // The difference itself is still visible.
    let v: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(v["inSync"], false);
    let o = &v["objects"][0];
    assert_eq!(o["state"], "modified");
    assert_eq!(
        o["live"]["data"]["password"],
        "(redacted: value in the cluster)"
    );
    assert_eq!(o["desired"]["data"]["password"], "(redacted: value in Git)");
    assert_eq!(o["desired"]["data"]["user"], "(redacted)");
    assert!(o["diff"].as_str().unwrap().contains("password"));
    assert!(ui.contains("data.password"), "{ui}");
}
