//! The registry scans what is pushed: a real Go binary (golang.org/x/text
//! v0.21.0, which the Go vulnerability database lists as affected) in an image
//! pushed with crane; plumb's registry, configured with `scan.on_push`, an
//! advisory store imported from the real Go vulndb and a cosign key, attaches
//! a signed report that OCI tools discover and `GET /plumb/v1/scan` serves.
//! Images pushed while scanning was off are found by the sweep at start, and
//! a new advisory import rescans everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plumb_testenv::{KillOnDrop, run_ok as ok, tool_path, wait_for_port};
use serde_json::Value;

fn plumb(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
    c.env("PLUMB_DATA_DIR", data)
        .env("COSIGN_PASSWORD", "scan-test");
    c
}

fn serve(data: &Path, config: &Path, root: &Path, host: &str) -> KillOnDrop {
    let child = plumb(data)
        .args([
            "registry",
            "serve",
            "--no-auth",
            "--listen",
            host,
            "--config",
        ])
        .arg(config)
        .arg("--root")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    wait_for_port(host);
    child
}

/// `GET http://host{path}` with a one-shot HTTP/1.0 exchange: status and body.
fn get(host: &str, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut buf = vec![];
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf[split + 4..].to_vec())
}

/// Wait for the report on `digest` made from `database`.
fn report(host: &str, repo: &str, digest: &str, database: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(host, &format!("/plumb/v1/scan/{repo}/{digest}"));
        if status == 200 {
            let doc: Value = serde_json::from_slice(&body).unwrap();
            if doc["database"]["digest"] == database {
                return doc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no report from {database} on {repo}@{digest}: last answer {status} {}",
            String::from_utf8_lossy(&body)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn import(data: &Path, from: &Path) -> String {
    let out = ok(plumb(data)
        .args(["advisories", "import", "--output", "json"])
        .arg(from));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["digest"].as_str().unwrap().to_owned()
}

fn finds(doc: &Value, id: &str, package: &str) -> bool {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == id && f["package"] == package)
}

#[test]
fn pushed_images_are_scanned_signed_swept_and_rescanned() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let root = work.path().join("registry");
    let crane = tool_path("crane");
    let oras = tool_path("oras");

    // The real Go vulnerability database.
    let database = import(&data, &plumb_testenv::vulndb_dir());
    ok(plumb(&data)
        .args(["artifact", "keygen", "--output-prefix"])
        .arg(work.path().join("cosign")));

    // An image with the Go binary, pushed while scanning is off.
    let binary = plumb_testenv::go_text_binary(&work.path().join("go"), "scanned");
    let layer = work.path().join("layer");
    std::fs::create_dir_all(layer.join("usr/local/bin")).unwrap();
    std::fs::copy(&binary, layer.join("usr/local/bin/scanned")).unwrap();
    let tar = work.path().join("layer.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&layer)
        .arg("usr"));
    let off = work.path().join("off.yaml");
    std::fs::write(&off, "").unwrap();
    let host = format!("127.0.0.1:{}", plumb_testenv::free_port());
    let early = {
        let _registry = serve(&data, &off, &root, &host);
        ok(Command::new(&crane)
            .args(["append", "--insecure", "--oci-empty-base", "-f"])
            .arg(&tar)
            .args(["-t", &format!("{host}/apps/early:v1.0.0")]));
        let digest = ok(Command::new(&crane).args([
            "digest",
            "--insecure",
            &format!("{host}/apps/early:v1.0.0"),
        ]));
        let (status, _) = get(&host, &format!("/plumb/v1/scan/apps/early/{digest}"));
        assert_eq!(status, 404, "nothing scans while scanning is off");
        digest
    };

    // Scanning on: the sweep at start scans the early image; a push is
    // scanned on arrival.
    let config = work.path().join("scan.yaml");
    std::fs::write(
        &config,
        format!(
            "scan:\n  on_push: true\n  advisories: {}\n  sign_key: {}\n  database_poll: 1s\n",
            data.join("advisories").display(),
            work.path().join("cosign.key").display()
        ),
    )
    .unwrap();
    let registry = serve(&data, &config, &root, &host);
    let doc = report(&host, "apps/early", &early, &database);
    assert!(finds(&doc, "GO-2026-6629", "golang.org/x/text"), "{doc:#}");

    ok(Command::new(&crane)
        .args(["append", "--insecure", "--oci-empty-base", "-f"])
        .arg(&tar)
        .args(["-t", &format!("{host}/apps/late:v1.0.0")]));
    let late = ok(Command::new(&crane).args([
        "digest",
        "--insecure",
        &format!("{host}/apps/late:v1.0.0"),
    ]));
    let doc = report(&host, "apps/late", &late, &database);
    assert!(finds(&doc, "GO-2026-6629", "golang.org/x/text"), "{doc:#}");
    assert!(doc["subject"]["packages"].as_u64().unwrap() >= 2, "{doc:#}");

    // An OCI client discovers the report as a referrer, and its signature
    // verifies against the registry's key.
    let discovered = ok(Command::new(&oras).args([
        "discover",
        "--plain-http",
        "--format",
        "json",
        "--artifact-type",
        "application/vnd.plumb.scan.report.v1+json",
        &format!("{host}/apps/late@{late}"),
    ]));
    let discovered: Value = serde_json::from_str(&discovered).unwrap();
    let referrers = discovered["referrers"]
        .as_array()
        .or_else(|| discovered["manifests"].as_array())
        .unwrap_or_else(|| panic!("{discovered:#}"));
    assert_eq!(referrers.len(), 1, "{discovered:#}");
    let report_digest = referrers[0]["digest"].as_str().unwrap();
    ok(plumb(&data)
        .args(["artifact", "verify", "--key"])
        .arg(work.path().join("cosign.pub"))
        .arg(format!("{host}/apps/late@{report_digest}")));

    let (status, metrics) = get(&host, "/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("plumb_registry_scans_total{result=\"ok\"} 2"),
        "{metrics}"
    );

    // A new import (the vulndb plus one more record) rescans every image.
    let more = work.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    for e in std::fs::read_dir(plumb_testenv::vulndb_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), more.join(e.file_name())).unwrap();
    }
    std::fs::write(
        more.join("PLUMB-TEST-0001.json"),
        r#"{"id": "PLUMB-TEST-0001", "modified": "2026-12-01T00:00:00Z",
            "summary": "a record written by this test to change the database",
            "affected": [{"package": {"ecosystem": "Go", "name": "golang.org/x/text"},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.99.0"}]}]}]}"#,
    )
    .unwrap();
    let newer = import(&data, &more);
    assert_ne!(newer, database);
    for (repo, digest) in [("apps/early", &early), ("apps/late", &late)] {
        let doc = report(&host, repo, digest, &newer);
        assert!(
            finds(&doc, "PLUMB-TEST-0001", "golang.org/x/text"),
            "{doc:#}"
        );
    }
    drop(registry);
}
