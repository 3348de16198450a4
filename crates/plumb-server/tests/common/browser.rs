//! Real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `testenv/setup.d/40-browser`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How the browser should look at pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The default: `prefers-color-scheme: light`.
    Light,
    /// `prefers-color-scheme: dark`.
    Dark,
}

/// A chromedriver with one headless Chromium session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    prefix: String,
}

fn find_tool(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
    {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{} not found (nor ${env}): run testenv/setup, whose setup.d/40-browser installs Debian's chromium and chromium-driver",
        names.join(" or ")
    );
}

/// Where screenshots go: `target/browser-screenshots/` (never committed).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let d = target.join("browser-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a session of a
    /// fresh headless Chromium profile. `prefix` names this test's screenshots.
    pub async fn start(prefix: &str, scheme: Scheme) -> Browser {
        let chromium = find_tool("PLUMB_CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = find_tool("PLUMB_CHROMEDRIVER", &["chromedriver"]);
        let port = plumb_testenv::free_port();
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Its own process group, so that dropping the browser ends Chromium's
        // processes too, even when a test fails half-way.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if scheme == Scheme::Dark {
            args.push("--force-dark-mode".into());
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let caps: serde_json::Map<String, Value> = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
        })
        .as_object()
        .unwrap()
        .clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver on {url} did not open a Chromium session: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
            shots: screenshot_dir(),
            prefix: prefix.to_string(),
        }
    }

    /// Save a screenshot as `target/browser-screenshots/<prefix>-<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Wait until `css` matches an element whose text satisfies `f`.
    pub async fn wait_text(
        &self,
        css: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if f(&t) {
                    return t;
                }
                last = t;
            }
            if Instant::now() > deadline {
                let _ = self
                    .shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("{css}: timed out waiting for {what}; last text: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click the element `css` matches. Live updates replace parts of the
    /// page, so an element found a moment ago may be gone by the click: find
    /// it again and retry, for up to ten seconds.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let err = match self.client.find(Locator::Css(css)).await {
                Ok(e) => match e.click().await {
                    Ok(()) => return,
                    Err(err) => err,
                },
                Err(err) => err,
            };
            if Instant::now() > deadline {
                panic!("{css}: cannot click: {err}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run JavaScript and return its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// End the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.stop();
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.driver.try_wait() {
            return;
        }
        // The driver's own process group (made for it at spawn): chromedriver
        // and every Chromium process. `--` matters: procps' kill reads
        // `-PGID` without it as a one-digit option and signals PID -1, which
        // is every process on the machine.
        let pgid = self.driver.id();
        if pgid > 1 && pgid != std::process::id() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &format!("-{pgid}")])
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}
