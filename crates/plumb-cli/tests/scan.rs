//! `plumb advisories` and `plumb artifact scan --sbom` end to end, against
//! the real Go vulnerability database (about 4,800 OSV records, fetched by
//! testenv/setup.d/51-advisories) and the OSV fixture records of
//! plumb-scan: findings for real vulnerable versions, exit codes by
//! `--fail-on`, and the JSON and SARIF reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn plumb(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PLUMB_DATA_DIR")
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixtures() -> PathBuf {
    plumb_testenv::repo_root().join("crates/plumb-scan/tests/fixtures/osv")
}

fn go_package(name: &str, version: &str, location: &str) -> Value {
    json!({"ecosystem": "Go", "name": name, "version": version,
           "purl": format!("pkg:golang/{name}@{version}"), "location": location})
}

fn write_sbom(dir: &Path, packages: Vec<Value>) -> PathBuf {
    let path = dir.join("sbom.json");
    let sbom = json!({"subject": "app", "packages": packages});
    std::fs::write(&path, serde_json::to_vec_pretty(&sbom).unwrap()).unwrap();
    path
}

/// The (id, package, version, fixed) rows of a JSON report.
fn rows(report: &Value) -> Vec<(String, String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["package"].as_str().unwrap().to_string(),
                f["version"].as_str().unwrap().to_string(),
                f["fixed"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has(
    rows: &[(String, String, String, String)],
    id: &str,
    package: &str,
    version: &str,
    fixed: &str,
) -> bool {
    rows.iter()
        .any(|r| r.0 == id && r.1 == package && r.2 == version && r.3 == fixed)
}

#[test]
fn the_go_vulnerability_database_finds_real_vulnerable_modules() {
    let vulndb = plumb_testenv::vulndb_dir();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");

    // Before any import: status and scan fail with a hint.
    let out = plumb(&data, &["advisories", "status"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("plumb advisories import"),
        "{}",
        text(&out).1
    );

    let started = std::time::Instant::now();
    let out = plumb(
        &data,
        &[
            "advisories",
            "import",
            vulndb.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let import_time = started.elapsed();
    assert!(out.status.success(), "{:?}", text(&out));
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = std::fs::read_dir(&vulndb).unwrap().count() as u64;
    assert_eq!(imported["files"], files);
    let withdrawn = imported["withdrawn"].as_u64().unwrap();
    assert!(withdrawn > 0, "the Go database has withdrawn records");
    assert_eq!(imported["advisories"].as_u64().unwrap(), files - withdrawn);
    let digest = imported["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"));
    eprintln!("imported {files} Go records in {import_time:?}");

    let out = plumb(&data, &["advisories", "status"]);
    assert!(out.status.success());
    assert!(text(&out).0.contains(&digest), "{}", text(&out).0);

    let sbom = write_sbom(
        work.path(),
        vec![
            go_package("golang.org/x/text", "v0.3.5", "go.mod"),
            go_package("golang.org/x/text", "v0.3.8", "tools/go.mod"),
            // A pseudo-version between two fixes.
            go_package(
                "golang.org/x/crypto",
                "v0.0.0-20200622213623-75b288015ac9",
                "go.mod",
            ),
            // +incompatible, on both sides of a fix.
            go_package(
                "github.com/docker/docker",
                "v20.10.13+incompatible",
                "go.mod",
            ),
            go_package(
                "github.com/docker/docker",
                "v20.10.14+incompatible",
                "other/go.mod",
            ),
            // The standard library, as go.mod and as a Go binary record it.
            go_package("stdlib", "1.20.0", "go.mod"),
            go_package("stdlib", "go1.19.6", "bin/app"),
        ],
    );
    let sbom = sbom.to_str().unwrap();

    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom, "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["database"]["digest"], digest.as_str());
    assert_eq!(report["subject"]["packages"], 7);
    let rows = rows(&report);
    assert!(
        has(
            &rows,
            "GO-2021-0113",
            "golang.org/x/text",
            "v0.3.5",
            "0.3.7"
        ),
        "{rows:#?}"
    );
    assert!(
        has(
            &rows,
            "GO-2022-1059",
            "golang.org/x/text",
            "v0.3.5",
            "0.3.8"
        ),
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r.1 == "golang.org/x/text"
        && r.2 == "v0.3.8"
        && (r.0 == "GO-2021-0113" || r.0 == "GO-2022-1059")));
    assert!(
        has(
            &rows,
            "GO-2021-0227",
            "golang.org/x/crypto",
            "v0.0.0-20200622213623-75b288015ac9",
            "0.0.0-20201216223049-8b5274cf687f"
        ),
        "{rows:#?}"
    );
    assert!(
        !rows.iter().any(|r| r.0 == "GO-2020-0012"),
        "fixed before that pseudo-version"
    );
    assert!(
        has(
            &rows,
            "GO-2022-0390",
            "github.com/docker/docker",
            "v20.10.13+incompatible",
            "20.10.14+incompatible"
        ),
        "{rows:#?}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == "GO-2022-0390" && r.2 == "v20.10.14+incompatible")
    );
    assert!(
        has(&rows, "GO-2023-1570", "stdlib", "1.20.0", "1.20.1"),
        "{rows:#?}"
    );
    assert!(
        has(&rows, "GO-2023-1621", "stdlib", "1.20.0", "1.20.2"),
        "{rows:#?}"
    );
    assert!(
        has(&rows, "GO-2023-1621", "stdlib", "go1.19.6", "1.19.7"),
        "{rows:#?}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == "GO-2023-1570" && r.2 == "go1.19.6"),
        "fixed in 1.19.6"
    );
    // Go records carry no severity: every finding is UNKNOWN, with aliases.
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["severity"] == "UNKNOWN"));
    let f = findings.iter().find(|f| f["id"] == "GO-2021-0113").unwrap();
    assert_eq!(
        f["aliases"],
        json!(["CVE-2021-38561", "GHSA-ppp9-7jff-5vj2"])
    );
    assert_eq!(f["locations"], json!(["go.mod"]));
    eprintln!("{} findings for 7 Go packages", findings.len());

    // --fail-on: UNKNOWN findings are below LOW, and at ANY/UNKNOWN.
    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom, "--fail-on", "low"],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom, "--fail-on", "unknown"],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let (table, _) = text(&out);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "SEVERITY", "PACKAGE", "VERSION", "FIXED"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "GO-2021-0113",
                    "UNKNOWN",
                    "golang.org/x/text",
                    "v0.3.5",
                    "0.3.7"
                ]),
        "{table}"
    );
    assert!(table.lines().last().unwrap().contains(&digest), "{table}");

    // SARIF 2.1.0.
    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom, "--format", "sarif"],
    );
    assert_eq!(out.status.code(), Some(0));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_sarif(&sarif, findings.len());

    // A version past every x/text fix: no findings, exit 0 at any threshold.
    let clean = write_sbom(
        work.path(),
        vec![go_package("golang.org/x/text", "v0.41.0", "go.mod")],
    );
    let out = plumb(
        &data,
        &[
            "artifact",
            "scan",
            "--sbom",
            clean.to_str().unwrap(),
            "--fail-on",
            "unknown",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"], json!([]), "{report:#}");
}

fn check_sarif(sarif: &Value, results: usize) {
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["$schema"]
            .as_str()
            .unwrap()
            .ends_with("sarif-schema-2.1.0.json")
    );
    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "plumb");
    assert!(driver["version"].is_string());
    let rules = driver["rules"].as_array().unwrap();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let results_ = run["results"].as_array().unwrap();
    assert_eq!(results_.len(), results);
    for r in results_ {
        let id = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rule_ids[index], id);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let locations = r["locations"].as_array().unwrap();
        assert!(!locations.is_empty());
        for l in locations {
            assert!(l["physicalLocation"]["artifactLocation"]["uri"].is_string());
        }
    }
}

#[test]
fn severities_decide_the_exit_code_and_sarif_levels() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let out = plumb(
        &data,
        &["advisories", "import", fixtures().to_str().unwrap()],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("imported 8 advisories"), "{stdout}");
    assert!(stdout.contains("digest sha256:"), "{stdout}");

    let sbom = work.path().join("sbom.json");
    std::fs::write(
        &sbom,
        serde_json::to_vec(&json!({"subject": "web", "packages": [
            {"ecosystem": "npm", "name": "lodash", "version": "4.17.20",
             "purl": "pkg:npm/lodash@4.17.20", "location": "web/package-lock.json"},
            {"ecosystem": "Debian", "release": "12", "name": "libssl3", "version": "3.0.11-1~deb12u1",
             "purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u1", "source": "openssl",
             "location": "var/lib/dpkg/status"},
            {"ecosystem": "PyPI", "name": "requests", "version": "2.25.0",
             "purl": "pkg:pypi/requests@2.25.0", "location": "requirements.txt"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let sbom = sbom.to_str().unwrap();
    let code = |fail_on: &str| {
        plumb(
            &data,
            &["artifact", "scan", "--sbom", sbom, "--fail-on", fail_on],
        )
        .status
        .code()
    };
    assert_eq!(code("critical"), Some(0));
    assert_eq!(code("high"), Some(1));
    assert_eq!(code("moderate"), Some(1));
    let out = plumb(&data, &["artifact", "scan", "--sbom", sbom]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no --fail-on: findings do not fail"
    );

    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom, "--format", "sarif"],
    );
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_sarif(&sarif, 5);
    let level = |id: &str| {
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleId"] == id)
            .map(|r| r["level"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(level("GHSA-35jh-r3h4-6jhm"), "error");
    assert_eq!(level("DEBIAN-CVE-2023-5363"), "error");
    assert_eq!(level("GHSA-29mw-wpgm-hmr9"), "warning");
    assert_eq!(level("PYSEC-2023-74"), "note");
    let uri = |id: &str| {
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleId"] == id)
            .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].clone())
            .unwrap()
    };
    assert_eq!(uri("DEBIAN-CVE-2023-5363"), "var/lib/dpkg/status");
    assert_eq!(uri("GHSA-35jh-r3h4-6jhm"), "web/package-lock.json");
}

#[test]
fn bad_input_is_an_error_with_exit_2_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    assert!(
        plumb(
            &data,
            &["advisories", "import", fixtures().to_str().unwrap()]
        )
        .status
        .success()
    );
    let before = text(&plumb(&data, &["advisories", "status"])).0;

    // A bad record: named with line and column; the store is unchanged.
    let bad = work.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(
        fixtures().join("npm/GHSA-35jh-r3h4-6jhm.json"),
        bad.join("good.json"),
    )
    .unwrap();
    std::fs::write(
        bad.join("broken.json"),
        "{\"id\": \"X\",\n \"affected\": 7}\n",
    )
    .unwrap();
    let out = plumb(&data, &["advisories", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let (_, err) = text(&out);
    assert!(err.contains("broken.json:2:"), "{err}");
    assert!(err.contains("--skip-invalid"), "{err}");
    assert_eq!(text(&plumb(&data, &["advisories", "status"])).0, before);
    // --skip-invalid imports the rest and warns.
    let out = plumb(
        &data,
        &[
            "advisories",
            "import",
            bad.to_str().unwrap(),
            "--skip-invalid",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out)
            .1
            .contains("skipped invalid record broken.json:2:"),
        "{:?}",
        text(&out)
    );
    assert!(
        text(&out).0.starts_with("imported 1 advisories"),
        "{:?}",
        text(&out)
    );

    // A bad SBOM: file, line and column; exit 2.
    let sbom = work.path().join("sbom.json");
    std::fs::write(
        &sbom,
        "{\"subject\": \"x\",\n  \"packages\": [{\"ecosystem\": \"Cobol\"}]}",
    )
    .unwrap();
    let out = plumb(
        &data,
        &["artifact", "scan", "--sbom", sbom.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let (_, err) = text(&out);
    assert!(err.contains(&format!("{}:2:", sbom.display())), "{err}");

    // No store: exit 2 with the hint.
    let out = plumb(
        &work.path().join("empty"),
        &["artifact", "scan", "--sbom", sbom.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("plumb advisories import"),
        "{:?}",
        text(&out)
    );
}
