//! The advisory store and matcher against the OSV fixture records in
//! `tests/fixtures/osv` (real advisories for Debian, Alpine, crates.io, npm
//! and PyPI packages): import from a directory and from a zip, the content
//! digest, bad records, atomic replacement, and scans of real versions.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

use plumb_scan::advisories::{AdvisoryError, ImportOptions, STORE_FILE, import};
use plumb_scan::{AdvisoryStore, Ecosystem, Package, Sbom, Severity, scan};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A zip of the `*.json` files under `dir`, entries named by relative path,
/// written in the order given by `reverse`.
fn zip_of(dir: &Path, out: &Path, reverse: bool) {
    let mut files = Vec::new();
    fn walk(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &format!("{name}/"), files);
            } else if name.ends_with(".json") {
                files.push((name, e.path()));
            }
        }
    }
    walk(dir, "", &mut files);
    files.sort();
    if reverse {
        files.reverse();
    }
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, path) in files {
        zip.start_file(name, opts).unwrap();
        zip.write_all(&std::fs::read(path).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

fn pkg(
    eco: Ecosystem,
    release: Option<&str>,
    name: &str,
    version: &str,
    source: Option<&str>,
) -> Package {
    Package {
        ecosystem: eco,
        release: release.map(Into::into),
        name: name.into(),
        version: version.into(),
        purl: format!("pkg:generic/{name}@{version}"),
        source: source.map(Into::into),
        location: format!("{}/{name}", eco.osv_name()),
    }
}

#[test]
fn fixtures_import_and_real_versions_match() {
    let data = tempfile::tempdir().unwrap();
    let summary = import(&fixtures(), data.path(), ImportOptions::default()).unwrap();
    assert_eq!(summary.files, 8);
    assert_eq!(summary.meta.advisories, 8);
    assert_eq!(summary.withdrawn, 0);
    assert!(summary.meta.digest.starts_with("sha256:") && summary.meta.digest.len() == 71);
    let store = AdvisoryStore::open(data.path()).unwrap();
    assert_eq!(store.meta(), &summary.meta);

    use Ecosystem::*;
    let sbom = Sbom {
        subject: "fixture".into(),
        digest: None,
        packages: vec![
            // Debian 12: libssl3 is built from openssl; the record keys on the source.
            pkg(
                Debian,
                Some("12"),
                "libssl3",
                "3.0.11-1~deb12u1",
                Some("openssl"),
            ),
            pkg(Debian, Some("12"), "openssl", "3.0.11-1~deb12u2", None),
            // Debian 11's zlib record: epoch 1 in the fixed version.
            pkg(
                Debian,
                Some("11"),
                "zlib1g",
                "1:1.2.11.dfsg-2+deb11u1",
                Some("zlib"),
            ),
            pkg(
                Debian,
                Some("12"),
                "zlib1g",
                "1:1.2.11.dfsg-2+deb11u1",
                Some("zlib"),
            ),
            pkg(
                Alpine,
                Some("v3.20"),
                "libcrypto3",
                "3.3.1-r0",
                Some("openssl"),
            ),
            pkg(
                Alpine,
                Some("v3.19"),
                "libcrypto3",
                "3.3.1-r0",
                Some("openssl"),
            ),
            pkg(
                Alpine,
                Some("v3.20"),
                "libssl3",
                "3.3.2-r0",
                Some("openssl"),
            ),
            pkg(CratesIo, None, "tokio", "1.8.3", None),
            pkg(CratesIo, None, "tokio", "1.9.0", None),
            pkg(CratesIo, None, "tokio", "1.8.4", None),
            pkg(CratesIo, None, "tokio", "0.1.13", None),
            pkg(Npm, None, "lodash", "4.17.20", None),
            pkg(Npm, None, "lodash", "3.10.1", None),
            pkg(PyPI, None, "Requests", "2.25.0", None),
            pkg(PyPI, None, "requests", "2.32.3", None),
        ],
    };
    let doc = scan(&sbom, &store).unwrap();
    let got: Vec<(String, String, String, Severity, Option<String>)> = doc
        .report
        .findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.package.clone(),
                f.version.clone(),
                f.severity,
                f.fixed.clone(),
            )
        })
        .collect();
    let want = |id: &str, p: &str, v: &str, s, fixed: Option<&str>| {
        (
            id.to_string(),
            p.to_string(),
            v.to_string(),
            s,
            fixed.map(String::from),
        )
    };
    use Severity::*;
    assert_eq!(
        got,
        vec![
            want(
                "DEBIAN-CVE-2022-37434",
                "zlib1g",
                "1:1.2.11.dfsg-2+deb11u1",
                Critical,
                Some("1:1.2.11.dfsg-2+deb11u2")
            ),
            want(
                "ALPINE-CVE-2024-6119",
                "libcrypto3",
                "3.3.1-r0",
                High,
                Some("3.3.2-r0")
            ),
            want(
                "DEBIAN-CVE-2023-5363",
                "libssl3",
                "3.0.11-1~deb12u1",
                High,
                Some("3.0.11-1~deb12u2")
            ),
            // Command injection affects every version before the fix; the
            // ReDoS only 4.x.
            want(
                "GHSA-35jh-r3h4-6jhm",
                "lodash",
                "3.10.1",
                High,
                Some("4.17.21")
            ),
            want(
                "GHSA-35jh-r3h4-6jhm",
                "lodash",
                "4.17.20",
                High,
                Some("4.17.21")
            ),
            want(
                "GHSA-9wx4-h78v-vm56",
                "Requests",
                "2.25.0",
                Medium,
                Some("2.32.0")
            ),
            want(
                "GHSA-29mw-wpgm-hmr9",
                "lodash",
                "4.17.20",
                Medium,
                Some("4.17.21")
            ),
            want(
                "PYSEC-2023-74",
                "Requests",
                "2.25.0",
                Unknown,
                Some("2.31.0")
            ),
            want(
                "RUSTSEC-2021-0124",
                "tokio",
                "1.8.3",
                Unknown,
                Some("1.8.4")
            ),
            want(
                "RUSTSEC-2021-0124",
                "tokio",
                "1.9.0",
                Unknown,
                Some("1.13.1")
            ),
        ],
        "{:#?}",
        doc.report.findings
    );
    assert_eq!(doc.database.digest, summary.meta.digest);
    assert_eq!(doc.subject.packages, 15);
    let alias = doc
        .report
        .findings
        .iter()
        .find(|f| f.id == "DEBIAN-CVE-2023-5363")
        .unwrap();
    assert!(alias.is("DSA-5532-1") && alias.is("cve-2023-5363"));
    assert_eq!(alias.locations, vec!["Debian/libssl3".to_string()]);
}

#[test]
fn a_directory_and_a_zip_of_the_same_records_have_one_digest() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let from_dir = import(&fixtures(), &a, ImportOptions::default()).unwrap();
    // Again: the same digest (the import time does not enter it).
    let again = import(&fixtures(), &a, ImportOptions::default()).unwrap();
    assert_eq!(from_dir.meta.digest, again.meta.digest);
    // A zip, entries in reverse order: the same digest and the same findings.
    let zip = work.path().join("all.zip");
    zip_of(&fixtures(), &zip, true);
    let from_zip = import(&zip, &b, ImportOptions::default()).unwrap();
    assert_eq!(from_zip.meta.digest, from_dir.meta.digest);
    assert_eq!(from_zip.meta.advisories, 8);
    let store = AdvisoryStore::open(&b).unwrap();
    assert_eq!(store.lookup("npm", "lodash").unwrap().len(), 2);
    assert_eq!(store.lookup("PyPI", "REQUESTS").unwrap().len(), 2);
    assert!(store.lookup("npm", "left-pad").unwrap().is_empty());
    // One changed byte changes it.
    let copy = work.path().join("copy");
    copy_dir(&fixtures(), &copy);
    let f = copy.join("npm/GHSA-35jh-r3h4-6jhm.json");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("4.17.21", "4.17.22");
    std::fs::write(&f, text).unwrap();
    let changed = import(&copy, &work.path().join("c"), ImportOptions::default()).unwrap();
    assert_ne!(changed.meta.digest, from_dir.meta.digest);
    // The digest as documented: sha256 over sorted (path NUL len-be64 bytes).
    let mut records = Vec::new();
    for rel in [
        "alpine/ALPINE-CVE-2024-6119.json",
        "crates.io/RUSTSEC-2021-0124.json",
        "debian/DEBIAN-CVE-2022-37434.json",
        "debian/DEBIAN-CVE-2023-5363.json",
        "npm/GHSA-29mw-wpgm-hmr9.json",
        "npm/GHSA-35jh-r3h4-6jhm.json",
        "pypi/GHSA-9wx4-h78v-vm56.json",
        "pypi/PYSEC-2023-74.json",
    ] {
        records.push((
            rel.to_string(),
            std::fs::read(fixtures().join(rel)).unwrap(),
        ));
    }
    let mut manual = Vec::new();
    for (p, b) in &records {
        manual.extend_from_slice(p.as_bytes());
        manual.push(0);
        manual.extend_from_slice(&(b.len() as u64).to_be_bytes());
        manual.extend_from_slice(b);
    }
    use sha2::Digest as _;
    let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manual)));
    assert_eq!(from_dir.meta.digest, want);
    records.reverse();
    assert_eq!(plumb_scan::advisories::content_digest(&records), want);
}

#[test]
fn a_bad_record_names_file_line_column_and_leaves_the_old_store() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let old = import(&fixtures(), &data, ImportOptions::default()).unwrap();

    let bad = work.path().join("bad");
    copy_dir(&fixtures(), &bad);
    // A syntax error on line 3, and a type error (aliases is not a list).
    std::fs::write(
        bad.join("npm/GHSA-broken.json"),
        "{\n  \"id\": \"GHSA-broken\",\n  \"affected\": [ }\n",
    )
    .unwrap();
    std::fs::write(
        bad.join("pypi/PYSEC-typed.json"),
        "{\"id\": \"PYSEC-x\",\n \"aliases\": \"CVE-1\"}",
    )
    .unwrap();
    let err = import(&bad, &data, ImportOptions::default()).unwrap_err();
    let AdvisoryError::Invalid { records } = &err else {
        panic!("{err}")
    };
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].file, "npm/GHSA-broken.json");
    assert_eq!((records[0].line, records[0].column), (3, 17));
    assert_eq!(records[1].file, "pypi/PYSEC-typed.json");
    assert_eq!(records[1].line, 2);
    let text = err.to_string();
    assert!(text.contains("npm/GHSA-broken.json:3:17: "), "{text}");
    assert!(text.contains("nothing was imported"), "{text}");
    // The old store is untouched.
    let store = AdvisoryStore::open(&data).unwrap();
    assert_eq!(store.meta(), &old.meta);
    assert!(!data.join(format!("{STORE_FILE}.new")).exists());

    // With skip_invalid, the rest is imported and the bad ones reported.
    let summary = import(&bad, &data, ImportOptions { skip_invalid: true }).unwrap();
    assert_eq!(summary.skipped.len(), 2);
    assert_eq!(summary.meta.advisories, 8);
    assert_ne!(summary.meta.digest, old.meta.digest);
    assert_eq!(AdvisoryStore::open(&data).unwrap().meta(), &summary.meta);
}

#[test]
fn withdrawn_records_are_left_out() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    copy_dir(&fixtures(), &input);
    let f = input.join("npm/GHSA-29mw-wpgm-hmr9.json");
    let text = std::fs::read_to_string(&f).unwrap().replacen(
        "\"modified\"",
        "\"withdrawn\": \"2024-03-01T00:00:00Z\",\n  \"modified\"",
        1,
    );
    std::fs::write(&f, text).unwrap();
    let summary = import(&input, &work.path().join("d"), ImportOptions::default()).unwrap();
    assert_eq!((summary.meta.advisories, summary.withdrawn), (7, 1));
    let store = AdvisoryStore::open(&work.path().join("d")).unwrap();
    let ids: Vec<String> = store
        .lookup("npm", "lodash")
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["GHSA-35jh-r3h4-6jhm"]);
}

#[test]
fn an_interrupted_import_leaves_the_previous_store() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let old = import(&fixtures(), &data, ImportOptions::default()).unwrap();
    // What a crash mid-import leaves: a half-written new file beside the store.
    std::fs::write(data.join(format!("{STORE_FILE}.new")), b"half a redb file").unwrap();
    let store = AdvisoryStore::open(&data).unwrap();
    assert_eq!(store.meta(), &old.meta);
    assert_eq!(store.lookup("crates.io", "tokio").unwrap().len(), 1);
    // A reader keeps its store open across the next import, which replaces it.
    let mut one = tempfile::tempdir().unwrap().keep();
    one.push("one");
    copy_dir(&fixtures().join("npm"), &one);
    let next = import(&one, &data, ImportOptions::default()).unwrap();
    assert_eq!(next.meta.advisories, 2);
    assert_eq!(store.lookup("crates.io", "tokio").unwrap().len(), 1);
    let fresh = AdvisoryStore::open(&data).unwrap();
    assert!(fresh.lookup("crates.io", "tokio").unwrap().is_empty());
    assert!(!data.join(format!("{STORE_FILE}.new")).exists());
    std::fs::remove_dir_all(one.parent().unwrap()).unwrap();
}

#[test]
fn bad_inputs_are_typed_errors() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = import(&empty, &work.path().join("d"), ImportOptions::default()).unwrap_err();
    assert!(matches!(err, AdvisoryError::Empty { .. }), "{err}");
    let not_zip = work.path().join("x.zip");
    std::fs::write(&not_zip, b"not a zip").unwrap();
    let err = import(&not_zip, &work.path().join("d"), ImportOptions::default()).unwrap_err();
    assert!(matches!(err, AdvisoryError::Zip { .. }), "{err}");
    assert!(err.to_string().contains("x.zip"), "{err}");
    let err = AdvisoryStore::open(&work.path().join("none")).unwrap_err();
    assert!(matches!(err, AdvisoryError::NoStore { .. }), "{err}");
    assert!(!work.path().join("d").join(STORE_FILE).exists());
}
