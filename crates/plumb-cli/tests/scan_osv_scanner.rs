//! plumb's scan next to osv-scanner's on the same input and the same
//! database: one image (a real Go binary, a Debian 12 package database, an
//! npm lock file, Python metadata) scanned by `plumb artifact scan` from
//! plumb's registry and by `osv-scanner scan image --archive` from the same
//! image saved as a tarball, both offline against the real Go vulnerability
//! database plus plumb's fixture records. The findings must agree except
//! for the differences listed in `EXPECTED_DIFFERENCES`, each explained; a
//! new difference either way fails the test and is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use plumb_testenv::{KillOnDrop, output_text as text, run_ok as ok, tool_path, wait_for_port};
use serde_json::Value;

/// Findings one scanner reports and the other does not, and why. Each is
/// `(scanner that reports it, advisory id, package, why)`.
const EXPECTED_DIFFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "plumb",
        "DEBIAN-CVE-2023-5363",
        "libssl3",
        "plumb reports every installed binary package built from an affected \
         source package (libssl3 comes from source openssl); osv-scanner \
         reports the source package once (openssl, which both report)",
    ),
    (
        "plumb",
        "GHSA-35jh-r3h4-6jhm",
        "lodash",
        "osv-scanner's image scan drops packages named only by a lock file \
         outside an installed node_modules tree ('non container relevant'); \
         plumb reads package-lock.json wherever it is, as for a directory",
    ),
    (
        "plumb",
        "GHSA-29mw-wpgm-hmr9",
        "lodash",
        "the same lock file as above",
    ),
];

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn populate(root: &Path, go: &Path) {
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::copy(go, root.join("usr/local/bin/compared")).unwrap();
    write(
        root,
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    );
    write(
        root,
        "var/lib/dpkg/status",
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\n\
         Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.11-1~deb12u1\n\n\
         Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n\n",
    );
    write(
        root,
        "app/package-lock.json",
        r#"{"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
            "packages": {"": {"name": "app", "version": "1.0.0", "dependencies": {"lodash": "4.17.20"}},
                         "node_modules/lodash": {"version": "4.17.20",
                           "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"}}}"#,
    );
    write(
        root,
        "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: Python HTTP for Humans.\n",
    );
}

/// The records both scanners read: the Go vulndb and plumb's fixtures.
fn records(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(plumb_testenv::vulndb_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plumb-scan/tests/fixtures/osv");
    for eco in std::fs::read_dir(fixtures).unwrap() {
        let eco = eco.unwrap().path();
        if !eco.is_dir() {
            continue;
        }
        for r in std::fs::read_dir(eco).unwrap() {
            let r = r.unwrap();
            std::fs::copy(r.path(), dir.join(r.file_name())).unwrap();
        }
    }
}

/// osv-scanner's offline layout: `<dir>/osv-scalibr/<Ecosystem>/all.zip`.
fn osv_database(records: &Path, dir: &Path) {
    ok(Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import json, os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
zips = {}
for name in sorted(os.listdir(src)):
    raw = open(os.path.join(src, name), 'rb').read()
    for eco in sorted({a['package']['ecosystem'].split(':')[0] for a in json.loads(raw).get('affected', []) if 'package' in a}):
        if eco not in zips:
            os.makedirs(os.path.join(dst, eco), exist_ok=True)
            zips[eco] = zipfile.ZipFile(os.path.join(dst, eco, 'all.zip'), 'w')
        zips[eco].writestr(name, raw)
for z in zips.values():
    z.close()
"#,
        )
        .arg(records)
        .arg(dir.join("osv-scalibr")));
}

#[test]
fn plumb_and_osv_scanner_agree_on_the_same_image() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let crane = tool_path("crane");
    let osv = tool_path("osv-scanner");

    let go = plumb_testenv::go_text_binary(&work.path().join("go"), "compared");
    let rootfs = work.path().join("rootfs");
    populate(&rootfs, &go);
    let tar = work.path().join("layer.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs)
        .arg("."));

    let host = format!("127.0.0.1:{}", plumb_testenv::free_port());
    let _registry = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args([
                "registry",
                "serve",
                "--no-auth",
                "--listen",
                &host,
                "--root",
            ])
            .arg(work.path().join("registry"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(&host);
    let image = format!("{host}/compare/app:v1.0.0");
    ok(Command::new(&crane)
        .args(["append", "--insecure", "--oci-empty-base", "-f"])
        .arg(&tar)
        .args(["-t", &image]));
    let archive = work.path().join("image.tar");
    ok(Command::new(&crane)
        .args(["pull", "--insecure", "--format", "tarball", &image])
        .arg(&archive));

    let recs = work.path().join("records");
    records(&recs);
    ok(Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("--data-dir")
        .arg(&data)
        .args(["advisories", "import"])
        .arg(&recs));
    let osvdb = work.path().join("osvdb");
    osv_database(&recs, &osvdb);

    // plumb: exit 1 means findings at or above the default threshold.
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("--data-dir")
        .arg(&data)
        .args(["artifact", "scan", &image, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.code().unwrap_or(2) <= 1, "{}", text(&out));
    let plumb: Value = serde_json::from_slice(&out.stdout).unwrap();
    let from_plumb: BTreeSet<(String, String)> = plumb["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    let out = Command::new(&osv)
        .args([
            "scan",
            "image",
            "--archive",
            "--offline",
            "--all-vulns",
            "--format",
            "json",
        ])
        .arg(&archive)
        .env("OSV_SCALIBR_LOCAL_DB_CACHE_DIRECTORY", &osvdb)
        .output()
        .unwrap();
    assert!(out.status.code().unwrap_or(128) <= 1, "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut from_osv = BTreeSet::new();
    for result in report["results"].as_array().into_iter().flatten() {
        for p in result["packages"].as_array().into_iter().flatten() {
            let name = p["package"]["name"].as_str().unwrap().to_owned();
            for v in p["vulnerabilities"].as_array().into_iter().flatten() {
                from_osv.insert((v["id"].as_str().unwrap().to_owned(), name.clone()));
            }
        }
    }

    assert!(
        from_plumb.contains(&("GO-2026-6629".into(), "golang.org/x/text".into())),
        "{from_plumb:?}"
    );
    let only_plumb: BTreeSet<_> = from_plumb.difference(&from_osv).cloned().collect();
    let only_osv: BTreeSet<_> = from_osv.difference(&from_plumb).cloned().collect();
    let expected = |who: &str| -> BTreeSet<(String, String)> {
        EXPECTED_DIFFERENCES
            .iter()
            .filter(|(w, ..)| *w == who)
            .map(|(_, id, package, _)| ((*id).to_owned(), (*package).to_owned()))
            .collect()
    };
    eprintln!(
        "both: {}, only plumb: {only_plumb:?}, only osv-scanner: {only_osv:?}",
        from_plumb.intersection(&from_osv).count()
    );
    assert_eq!(only_plumb, expected("plumb"), "findings only plumb reports");
    assert_eq!(
        only_osv,
        expected("osv-scanner"),
        "findings only osv-scanner reports"
    );
}
