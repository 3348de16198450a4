//! Benchmark: the list endpoint and the list page with 5000 Applications.
//!
//! Run through `bench/ui`, which builds `plumb` in release mode, starts a
//! real control plane and passes `PLUMB_BIN`. This program makes one Git
//! repository with 50 small applications (a ConfigMap each; ten of them also
//! a Deployment, which never becomes ready on a control plane without
//! nodes), writes 5000 Application files over those 50 paths and 100
//! namespaces (so every Application owns distinct objects), and gives them a
//! realistic spread: 65% automated (Synced, Healthy or Progressing), 30%
//! manual and never synced (OutOfSync, Missing), 5% pointing at a path that
//! does not exist (failing, Unknown). It starts the real `plumb agent`
//! binary on them, waits until every Application has been reconciled, then
//! measures:
//!
//! - `GET /api/v1/applications` latency (p50, p99, max) for the default page,
//!   the largest page, filters, the last page, and with 8 concurrent clients;
//! - the same while every automated Application syncs a new commit;
//! - the server-rendered list page over HTTP;
//! - in headless Chromium: navigation start to the load event (and first
//!   contentful paint) of the list page at 50 and 500 rows, and of an
//!   Application page.
//!
//! It prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/browser.rs"]
mod browser;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use browser::{Browser, Scheme};
use fantoccini::Locator;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use plumb_testenv::git::GitRepo;
use plumb_testenv::testenv;
use serde_json::{Value, json};

const APPS: usize = 5000;
const PATHS: usize = 50;
const NAMESPACES: usize = 100;
const SEQUENTIAL: usize = 2000;

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n  payload: \"{}\"\n",
        "x".repeat(200)
    )
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/{name}:1.0.0\n"
    )
}

fn write_repo(repo: &GitRepo, version: &str) {
    for p in 0..PATHS {
        repo.write(
            &format!("p{p:02}/config.yaml"),
            cm(&format!("cfg-p{p:02}"), version),
        );
        if p >= 40 {
            repo.write(
                &format!("p{p:02}/deploy.yaml"),
                deployment(&format!("web-p{p:02}")),
            );
        }
    }
}

/// What kind of Application number `i` is.
fn policy(i: usize) -> (&'static str, &'static str) {
    match i % 20 {
        19 => (
            "broken",
            "  syncPolicy:\n    automated:\n      prune: true\n",
        ),
        13..=18 => ("manual", ""),
        _ => (
            "auto",
            "  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
        ),
    }
}

fn write_apps(dir: &Path, repo: &GitRepo) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..APPS {
        let (kind, policy) = policy(i);
        let path = if kind == "broken" {
            "no-such-path".to_string()
        } else {
            format!("p{:02}", i % PATHS)
        };
        let ns = format!("bench-{:03}", i / PATHS);
        let text = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: app-{i:04}\n  namespace: argocd\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n{policy}",
            repo.url()
        );
        std::fs::write(dir.join(format!("app-{i:04}.yaml")), text).unwrap();
    }
}

struct Agent {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(plumb: &Path, data: &Path, apps: &Path) -> Agent {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(plumb)
        .args(["--data-dir"])
        .arg(data)
        .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--parallelism", "16", "--poll-interval", "3s"])
        .arg("--kubeconfig")
        .arg(testenv().kubeconfig())
        .arg(apps)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", plumb.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let token = line.trim().to_string();
    assert!(
        token.starts_with("plumb_"),
        "no admin token on stdout: {line:?}"
    );
    Agent {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token,
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(16)
        .build()
        .unwrap()
}

async fn all_statuses(http: &reqwest::Client, a: &Agent) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let v: Value = http
            .get(format!(
                "{}/api/v1/applications?limit=500&offset={offset}",
                a.base
            ))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap();
        out.extend(items.iter().cloned());
        offset += items.len();
        if items.is_empty() || offset >= v["total"].as_u64().unwrap() as usize {
            return out;
        }
    }
}

fn tally(all: &[Value]) -> String {
    let mut m = std::collections::BTreeMap::<String, usize>::new();
    for s in all {
        *m.entry(format!(
            "{}/{}/{}",
            s["sync"].as_str().unwrap(),
            s["health"].as_str().unwrap(),
            s["phase"].as_str().unwrap()
        ))
        .or_default() += 1;
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    bytes: usize,
}

fn stats(mut ms: Vec<f64>, bytes: usize) -> Stats {
    ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Stats {
        n: ms.len(),
        p50: q(0.50),
        p99: q(0.99),
        max: *ms.last().unwrap(),
        bytes,
    }
}

async fn timed_gets(http: &reqwest::Client, url: &str, token: &str, n: usize) -> Stats {
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).bearer_auth(token).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        bytes = r.bytes().await.unwrap().len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stats(ms, bytes)
}

async fn concurrent_gets(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    clients: usize,
    each: usize,
) -> Stats {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token) = (http.clone(), url.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::with_capacity(each);
            for _ in 0..each {
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    stats(all, 0)
}

/// Load `url` `n` times in Chromium; milliseconds from navigation start to
/// the load event, and to the first contentful paint.
async fn page_loads(b: &Browser, url: &str, ready: &str, n: usize) -> (Stats, Stats, usize) {
    let mut load = Vec::new();
    let mut fcp = Vec::new();
    let mut rows = 0;
    for _ in 0..n {
        b.client.goto(url).await.unwrap();
        b.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(ready))
            .await
            .unwrap();
        // The load event has fired once loadEventEnd is set.
        let deadline = Instant::now() + Duration::from_secs(30);
        let v = loop {
            let v = b
                .js("const n = performance.getEntriesByType('navigation')[0]; \
                     const p = performance.getEntriesByName('first-contentful-paint')[0]; \
                     return {load: n.loadEventEnd, fcp: p ? p.startTime : 0, \
                     rows: document.querySelectorAll('#apps tbody tr').length};")
                .await;
            if v["load"].as_f64().unwrap_or(0.0) > 0.0 && v["fcp"].as_f64().unwrap_or(0.0) > 0.0 {
                break v;
            }
            assert!(Instant::now() < deadline, "{url} never finished loading");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        load.push(v["load"].as_f64().unwrap());
        fcp.push(v["fcp"].as_f64().unwrap());
        rows = v["rows"].as_u64().unwrap() as usize;
    }
    (stats(load, 0), stats(fcp, 0), rows)
}

fn row(table: &mut Vec<String>, what: &str, s: &Stats, target: &str) {
    table.push(format!(
        "| {what} | {} | {:.2} | {:.2} | {:.2} | {} | {target} |",
        s.n,
        s.p50,
        s.p99,
        s.max,
        if s.bytes > 0 {
            format!("{:.1} KB", s.bytes as f64 / 1024.0)
        } else {
            String::new()
        }
    ));
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let plumb =
        PathBuf::from(std::env::var_os("PLUMB_BIN").expect("PLUMB_BIN: run this through bench/ui"));
    let work = tempfile::tempdir().unwrap();
    let env = testenv();
    let kube = env.client().await;
    let nss: Api<Namespace> = Api::all(kube.clone());
    for n in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("bench-{n:03}")}})).unwrap();
        let _ = nss.create(&PostParams::default(), &ns).await;
    }
    let repo = GitRepo::new();
    write_repo(&repo, "1");
    repo.commit("version 1");
    let apps = work.path().join("apps");
    write_apps(&apps, &repo);
    eprintln!(
        "bench/ui: {APPS} Applications over {PATHS} paths and {NAMESPACES} namespaces; starting the agent"
    );

    let started = Instant::now();
    let agent = start_agent(&plumb, &work.path().join("data"), &apps);
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let settled = loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let all = match tokio::time::timeout(Duration::from_secs(60), all_statuses(&http, &agent))
            .await
        {
            Ok(a) => a,
            Err(_) => continue,
        };
        let pending = all
            .iter()
            .filter(|s| {
                s["phase"] == "Pending"
                    || s["phase"] == "Syncing"
                    || s.get("lastReconcile").is_none()
            })
            .count();
        eprintln!(
            "bench/ui: {:>4.0}s, {} Applications, {pending} not yet reconciled",
            started.elapsed().as_secs_f64(),
            all.len()
        );
        if all.len() == APPS && pending == 0 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not reconcile {APPS} Applications in 30 minutes"
        );
    };
    let reconcile_all = started.elapsed();
    let mix = tally(&settled);
    eprintln!("bench/ui: all reconciled in {reconcile_all:.0?}: {mix}");

    let api = |q: &str| format!("{}/api/v1/applications{q}", agent.base);
    let mut table = vec![
        "| measurement (5000 Applications) | requests | p50 ms | p99 ms | max ms | response | target |".to_string(),
        "|---|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    // Let the first wave of watch events settle, warm up connections.
    tokio::time::sleep(Duration::from_secs(10)).await;
    timed_gets(&http, &api(""), &agent.token, 50).await;
    let s = timed_gets(&http, &api(""), &agent.token, SEQUENTIAL).await;
    row(
        &mut table,
        "`GET /api/v1/applications` (default page, 50)",
        &s,
        "p99 ≤ 50 ms",
    );
    let list_p99 = s.p99;
    let s = timed_gets(&http, &api("?limit=500"), &agent.token, SEQUENTIAL / 4).await;
    row(&mut table, "… `?limit=500` (largest page)", &s, "");
    let s = timed_gets(&http, &api("?offset=4950"), &agent.token, SEQUENTIAL / 4).await;
    row(&mut table, "… `?offset=4950` (last page)", &s, "");
    let s = timed_gets(&http, &api("?name=app-04"), &agent.token, SEQUENTIAL / 4).await;
    row(&mut table, "… `?name=app-04` (search)", &s, "");
    let s = timed_gets(
        &http,
        &api("?sync=OutOfSync&health=Missing"),
        &agent.token,
        SEQUENTIAL / 4,
    )
    .await;
    row(&mut table, "… `?sync=OutOfSync&health=Missing`", &s, "");
    let s = concurrent_gets(&http, &api(""), &agent.token, 8, SEQUENTIAL / 8).await;
    row(&mut table, "… default page, 8 concurrent clients", &s, "");

    // While every automated Application syncs a new commit.
    write_repo(&repo, "2");
    let new_commit = repo.commit("version 2");
    let churn_start = Instant::now();
    let busy = Arc::new(AtomicBool::new(true));
    let mut ms = Vec::new();
    let mut polls = 0;
    let target2 = {
        let watcher_http = http.clone();
        let url = api("?limit=500");
        let token = agent.token.clone();
        let busy = busy.clone();
        let new_commit = new_commit.clone();
        tokio::spawn(async move {
            // Done when every automated, non-broken Application is at the new commit.
            let want = (0..APPS).filter(|i| policy(*i).0 == "auto").count();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let mut at_new = 0;
                let mut offset = 0;
                loop {
                    let v: Value = watcher_http
                        .get(format!("{url}&offset={offset}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let items = v["items"].as_array().unwrap().clone();
                    offset += items.len();
                    at_new += items
                        .iter()
                        .filter(|s| {
                            s["revision"] == new_commit.as_str()
                                && s["sync"] == "Synced"
                                && s["phase"] == "Idle"
                        })
                        .count();
                    if items.is_empty() || offset >= APPS {
                        break;
                    }
                }
                if at_new >= want {
                    busy.store(false, Ordering::SeqCst);
                    return;
                }
            }
        })
    };
    while busy.load(Ordering::SeqCst) && churn_start.elapsed() < Duration::from_secs(900) {
        let t = Instant::now();
        let r = http
            .get(api(""))
            .bearer_auth(&agent.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        polls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    target2.abort();
    let churn = churn_start.elapsed();
    let churn_stats = stats(ms, 0);
    row(
        &mut table,
        &format!(
            "… default page while {} Applications sync a new commit ({churn:.0?})",
            (0..APPS).filter(|i| policy(*i).0 == "auto").count()
        ),
        &churn_stats,
        "",
    );
    eprintln!("bench/ui: churn done in {churn:.0?} ({polls} list requests meanwhile)");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = timed_gets(&http, &api(""), &agent.token, SEQUENTIAL).await;
    row(
        &mut table,
        "`GET /api/v1/applications` (default page) again, after the churn",
        &s,
        "",
    );

    // The server-rendered page over HTTP (with the UI cookie).
    let page = |q: &str| format!("{}{q}", agent.base);
    let cookie_http = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::COOKIE,
            format!("plumb_token={}", agent.token).parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .unwrap()
    };
    let timed_page = |q: String, n: usize| {
        let cookie_http = cookie_http.clone();
        async move {
            let mut ms = Vec::new();
            let mut bytes = 0;
            for _ in 0..n {
                let t = Instant::now();
                let r = cookie_http.get(&q).send().await.unwrap();
                assert!(r.status().is_success(), "{q}: {}", r.status());
                bytes = r.bytes().await.unwrap().len();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            stats(ms, bytes)
        }
    };
    let s = timed_page(page("/"), 500).await;
    row(
        &mut table,
        "list page HTML over HTTP (50 rows, counts of all 5000)",
        &s,
        "",
    );
    let s = timed_page(page("/?per=500"), 200).await;
    row(&mut table, "list page HTML over HTTP (500 rows)", &s, "");

    // Chromium.
    let b = Browser::start("bench", Scheme::Light).await;
    b.client.goto(&page("/login")).await.unwrap();
    b.client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&agent.token)
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#apps"))
        .await
        .unwrap();
    let mut browser_table = vec![
        "| page in headless Chromium (5000 Applications) | loads | load event p50 ms | p99 ms | max ms | first paint p50 ms | rows | target |".to_string(),
        "|---|---:|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    let mut page_p99 = 0.0;
    for (what, url, ready, target) in [
        ("list, 50 per page", page("/"), "#apps", "≤ 1000 ms"),
        ("list, 500 per page", page("/?per=500"), "#apps", ""),
        ("list, search `app-04`", page("/?q=app-04"), "#apps", ""),
        (
            "an Application page",
            page("/applications/argocd%2Fapp-0040"),
            "#app",
            "",
        ),
    ] {
        let (load, fcp, rows) = page_loads(&b, &url, ready, 30).await;
        if !target.is_empty() {
            page_p99 = load.p99;
        }
        browser_table.push(format!(
            "| {what} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {rows} | {target} |",
            load.n, load.p50, load.p99, load.max, fcp.p50
        ));
    }
    b.client.goto(&page("/")).await.unwrap();
    b.shot("list-5000").await;
    b.close().await;
    drop(agent);

    println!(
        "\nbench/ui: plumb agent (release), {APPS} Applications ({mix}); initial reconcile of all: {reconcile_all:.0?}\n"
    );
    println!("{}", table.join("\n"));
    println!();
    println!("{}", browser_table.join("\n"));
    println!(
        "\nlist endpoint p99 {list_p99:.2} ms (target ≤ 50 ms: {}); list page load p99 {page_p99:.0} ms (target ≤ 1000 ms: {})",
        if list_p99 <= 50.0 { "met" } else { "MISSED" },
        if page_p99 <= 1000.0 { "met" } else { "MISSED" },
    );
    println!(
        "Argo CD users report 35 000–120 000 ms list pages at 4000–8000 Applications: plumb's list page p99 is {:.0}x–{:.0}x faster than those reports (not measured in this run; see docs/BENCHMARKS.md).",
        35_000.0 / page_p99.max(1.0),
        120_000.0 / page_p99.max(1.0)
    );
    for n in 0..NAMESPACES {
        let _ = nss
            .delete(&format!("bench-{n:03}"), &Default::default())
            .await;
    }
}
