//! `plumb agent`'s tokens as users meet them: the real binary prints the first
//! admin token once, `plumb token create` works while the agent runs on the
//! same data directory, roles hold over HTTP, tokens never reach the log, and
//! `--insecure-no-auth` warns loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request; the status and body.
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

struct Running {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(data: &Path, apps: &Path, extra: &[&str]) -> Running {
        let port = plumb_testenv::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(data)
            .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg(apps)
            .env("PLUMB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |r: Box<dyn Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(l);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        let r = Running {
            child,
            port,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || r.stderr
                .lock()
                .unwrap()
                .iter()
                .all(|l| !l.contains("listening on"))
        {
            assert!(
                Instant::now() < deadline,
                "the agent did not start: {:?}",
                r.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the agent exited with {status} on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (out, err)
    }
}

fn token_create(data: &Path, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["token", "create", "--role", role, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plumb token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on stdout: {stdout:?}");
    assert!(lines[0].starts_with("plumb_"), "{stdout:?}");
    lines[0].to_string()
}

#[test]
fn tokens_are_made_while_the_agent_runs_and_roles_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = dir.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();

    let agent = Running::start(&data, &apps, &[]);
    // The first admin token, alone on stdout, once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let admin = loop {
        if let Some(t) = agent.stdout.lock().unwrap().first().cloned() {
            break t;
        }
        assert!(Instant::now() < deadline, "no admin token on stdout");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        admin.starts_with("plumb_") && admin.len() == 70,
        "{admin:?}"
    );

    // More tokens, from another process, while the agent holds the store.
    let reader = token_create(&data, "readonly");
    let second_admin = token_create(&data, "admin");
    let list = "/api/v1/applications";
    let refresh = "/api/v1/applications/anything/refresh";
    assert_eq!(request(agent.port, "GET", list, None).0, 401);
    assert_eq!(request(agent.port, "GET", list, Some("plumb_wrong")).0, 401);
    for t in [&admin, &reader, &second_admin] {
        let (status, body) = request(agent.port, "GET", list, Some(t));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"total\":0"), "{body}");
    }
    assert_eq!(request(agent.port, "POST", refresh, Some(&reader)).0, 403);
    // Admins pass the role check; there is no such Application.
    assert_eq!(
        request(agent.port, "POST", refresh, Some(&second_admin)).0,
        404
    );
    assert_eq!(request(agent.port, "GET", "/healthz", None).0, 200);

    // Listed by id, name and role, never by the token; revoked while the
    // agent runs, a token is refused from the next request on.
    let plumb = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, _) = plumb(&["token", "list", "-o", "json"]);
    assert!(ok);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let (ok, table, _) = plumb(&["token", "list"]);
    assert!(ok);
    for t in [&admin, &reader, &second_admin] {
        assert!(!table.contains(t.as_str()), "a token in the list: {table}");
    }
    let reader_id = listed.iter().find(|t| t["role"] == "readonly").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(table.contains(&reader_id), "{table}");
    let (ok, _, err) = plumb(&["token", "revoke", "no-such-token"]);
    assert!(!ok && err.contains("no token has the id or name"), "{err}");
    let (ok, out, err) = plumb(&["token", "revoke", &reader_id]);
    assert!(ok, "{err}");
    assert!(out.contains(&reader_id), "{out}");
    // The agent trusts a verified token for at most 5 s before asking the
    // store again.
    let revoked_at = Instant::now();
    while request(agent.port, "GET", list, Some(&reader)).0 != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(7),
            "a revoked token still works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(request(agent.port, "GET", list, Some(&admin)).0, 200);

    let (out, err) = agent.stop();
    assert_eq!(
        out,
        vec![admin.clone()],
        "only the first admin token on stdout"
    );
    let log = err.join("\n");
    for t in [&admin, &reader, &second_admin] {
        assert!(!log.contains(t.as_str()), "a token reached the log: {log}");
    }

    // A second start creates no new token and prints none.
    let agent = Running::start(&data, &apps, &[]);
    assert_eq!(request(agent.port, "GET", list, Some(&second_admin)).0, 200);
    assert_eq!(request(agent.port, "GET", list, Some(&reader)).0, 401);
    let (out, _) = agent.stop();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn no_auth_only_behind_a_flag_with_a_loud_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = dir.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    let agent = Running::start(&data, &apps, &["--insecure-no-auth"]);
    let (status, _) = request(agent.port, "GET", "/api/v1/applications", None);
    assert_eq!(status, 200);
    let (status, _) = request(agent.port, "POST", "/api/v1/applications/x/refresh", None);
    assert_eq!(status, 404, "writes pass authentication without a token");
    let (out, err) = agent.stop();
    assert!(out.is_empty(), "no token is made without auth: {out:?}");
    let warning = err
        .iter()
        .find(|l| l.contains("WARNING"))
        .cloned()
        .unwrap_or_default();
    assert!(
        warning.contains("--insecure-no-auth") && warning.contains("change your clusters"),
        "{err:?}"
    );
}
