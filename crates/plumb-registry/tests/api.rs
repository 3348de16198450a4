//! The distribution API's refusals: tag policy, auth roles and bad input.
//! Each refusal must answer with the right status and OCI error code and
//! leave the registry unchanged.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    OCI_INDEX, READER, READER_PASSWORD, TestRegistry, assert_refused, error_code, index_of,
};
use plumb_oci::Digest;
use reqwest::Method;

const SHA_TAG: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn git_sha_and_version_tags_are_immutable() {
    let reg = TestRegistry::start();
    let h = reg.http();
    for tag in [SHA_TAG, "v1.2.3"] {
        let (first, body) = h.push_image("app", tag, &[b"one"]);
        // Re-pushing the same manifest is fine (idempotent).
        assert_eq!(h.put_manifest("app", tag, &body).status(), 201);
        // A different manifest is refused with 409 and an OCI body naming the policy.
        let (_, other) = {
            let c = h.push_blob("app", b"two");
            let _ = c;
            h.push_image("app", "scratch", &[b"two"])
        };
        let r = h.put_manifest("app", tag, &other);
        assert_eq!(r.status(), 409);
        let body = r.text().unwrap();
        assert_eq!(error_code(&body), "DENIED");
        assert!(body.contains("immutable_tags"), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["detail"]["policy"], "immutable_tags");
        // The tag still names the first manifest.
        let got = h.get(&format!("/v2/app/manifests/{tag}"));
        assert_eq!(
            got.headers()["docker-content-digest"].to_str().unwrap(),
            first.to_string()
        );
        // Nor can it be deleted through the API to be re-pointed.
        let r = h.delete(&format!("/v2/app/manifests/{tag}"));
        assert_eq!(r.status(), 409);
        let r = h.delete(&format!("/v2/app/manifests/{first}"));
        assert_eq!(r.status(), 409);
    }
    // Ordinary tags move freely.
    h.push_image("app", "main", &[b"a"]);
    let (second, _) = h.push_image("app", "main", &[b"b"]);
    let got = h.get("/v2/app/manifests/main");
    assert_eq!(
        got.headers()["docker-content-digest"].to_str().unwrap(),
        second.to_string()
    );
}

#[test]
fn a_repository_can_forbid_latest_and_patterns_are_configurable() {
    let reg = TestRegistry::start_with(
        "immutable_tags: ['^release-']\nrepositories:\n  - match: \"prod/**\"\n    forbid_latest: true\n",
    );
    let h = reg.http();
    h.push_blob("prod/api", b"x");
    let (_, body) = h.push_image("prod/api", "candidate", &[b"x"]);
    let r = h.put_manifest("prod/api", "latest", &body);
    assert_eq!(r.status(), 409);
    let text = r.text().unwrap();
    assert!(text.contains("forbid_latest"), "{text}");
    // Other repositories may use latest.
    h.push_image("dev/api", "latest", &[b"x"]);
    // The configured pattern replaces the default one.
    h.push_image("dev/api", "release-1", &[b"1"]);
    let (_, other) = h.push_image("dev/api", "tmp", &[b"2"]);
    assert_eq!(h.put_manifest("dev/api", "release-1", &other).status(), 409);
    h.push_image("dev/api", "v1.0.0", &[b"1"]);
    assert_eq!(h.put_manifest("dev/api", "v1.0.0", &other).status(), 201);
}

#[test]
fn credentials_and_roles() {
    let reg = TestRegistry::start();
    let h = reg.http();
    h.push_image("team/app", "v1.0.0", &[b"layer"]);
    // Anonymous: nothing, not even pulls (anonymous pull is off by default).
    let anon = reg.http().anonymous();
    let r = anon.get("/v2/");
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(anon.get("/v2/team/app/manifests/v1.0.0").status(), 401);
    // Wrong password.
    let wrong = reg.http().with_user(common::USER, "nope");
    assert_eq!(wrong.get("/v2/team/app/tags/list").status(), 401);
    // The read role pulls but cannot push or delete.
    let reader = reg.http().with_user(READER, READER_PASSWORD);
    assert_eq!(reader.get("/v2/team/app/manifests/v1.0.0").status(), 200);
    assert_refused(reader.post("/v2/team/app/blobs/uploads/"), 403, "DENIED");
    let r = reader.delete("/v2/team/app/manifests/v1.0.0");
    assert_eq!(r.status(), 403);
}

#[test]
fn anonymous_pull_when_enabled() {
    let reg = TestRegistry::start_with("");
    drop(reg);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.yaml");
    std::fs::write(&cfg, "auth:\n  htpasswd: h\n  anonymous_pull: true\n").unwrap();
    std::fs::write(dir.path().join("h"), "").unwrap();
    let config = plumb_registry::RegistryConfig::load(&cfg).unwrap();
    let registry = plumb_registry::Registry::open(&dir.path().join("root"), config).unwrap();
    use plumb_registry::auth::{Access, Need};
    let pull = Need::Repository {
        name: "a",
        write: false,
    };
    let push = Need::Repository {
        name: "a",
        write: true,
    };
    assert!(registry.authorize(&Access::Anonymous, pull, None).is_ok());
    assert!(registry.authorize(&Access::Anonymous, push, None).is_err());
}

#[test]
fn wrong_digest_is_refused_and_nothing_is_stored() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let before = reg.blob_files();
    let wrong = Digest::sha256_of(b"something else");
    // Monolithic POST.
    let r = h
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
        )
        .body(b"actual bytes".to_vec())
        .send()
        .unwrap();
    assert_refused(r, 400, "DIGEST_INVALID");
    // POST then PUT.
    let loc = h.start_upload("app");
    let r = h
        .req(Method::PUT, &format!("{loc}?digest={wrong}"))
        .body(b"actual bytes".to_vec())
        .send()
        .unwrap();
    assert_refused(r, 400, "DIGEST_INVALID");
    // A malformed digest.
    let r = h
        .req(Method::POST, "/v2/app/blobs/uploads/?digest=sha256:xyz")
        .body(b"a".to_vec())
        .send()
        .unwrap();
    assert_refused(r, 400, "DIGEST_INVALID");
    // A manifest PUT by a digest that is not its own.
    let (_, body) = h.push_image("app", "x", &[b"l"]);
    let before_manifest = reg.blob_files();
    let r = h.put_manifest("app", &wrong.to_string(), &body);
    assert_refused(r, 400, "DIGEST_INVALID");
    assert_eq!(reg.blob_files(), before_manifest);
    assert_eq!(h.get(&format!("/v2/app/blobs/{wrong}")).status(), 404);
    assert!(before.is_empty());
    // No upload files linger.
    assert_eq!(
        std::fs::read_dir(reg.root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn oversized_and_malformed_manifests() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let big = format!(r#"{{"schemaVersion":2,"pad":"{}"}}"#, "x".repeat(5 << 20));
    assert_refused(
        h.put_manifest("app", "big", big.as_bytes()),
        413,
        "SIZE_INVALID",
    );
    for bad in [
        &b"not json"[..],
        b"[1,2]",
        br#"{"schemaVersion":1}"#,
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:00"}}"#,
        br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","config":{}}"#,
    ] {
        let r = h.put_manifest("app", "bad", bad);
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(error_code(&r.text().unwrap()), "MANIFEST_INVALID");
    }
    assert_eq!(h.get("/v2/app/manifests/bad").status(), 404);
    assert!(
        reg.blob_files().is_empty(),
        "a refused manifest left bytes behind"
    );
}

#[test]
fn manifests_naming_missing_blobs_are_refused() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let config = h.push_blob("app", b"{}");
    let missing = Digest::sha256_of(b"never pushed");
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{missing}","size":12}}]}}"#
    );
    let r = h.put_manifest("app", "v", m.as_bytes());
    assert_eq!(r.status(), 400);
    let body = r.text().unwrap();
    assert_eq!(error_code(&body), "MANIFEST_BLOB_UNKNOWN");
    assert!(body.contains(&missing.to_string()));
    // A blob that exists in another repository does not count.
    h.push_blob("other", b"never pushed");
    let r = h.put_manifest("app", "v", m.as_bytes());
    assert_eq!(error_code(&r.text().unwrap()), "MANIFEST_BLOB_UNKNOWN");
    // An index naming a missing child manifest.
    let idx = index_of(&missing, 5);
    let r = h.put_manifest_as("app", "idx", OCI_INDEX, idx.as_bytes());
    assert_eq!(error_code(&r.text().unwrap()), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        h.get("/v2/app/tags/list")
            .json::<serde_json::Value>()
            .unwrap()["tags"],
        serde_json::json!([])
    );
}

#[test]
fn invalid_repository_names_are_refused() {
    let reg = TestRegistry::start();
    let h = reg.http();
    // reqwest normalises `..` away, so send the literal request line.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/../etc/tags/list",
        "/v2/a/./b/manifests/x",
    ] {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(reg.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
            base64_creds()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("NAME_INVALID"), "{path}: {resp}");
    }
    for name in ["UPPER", "a//b", "a_-b", "-a", "a/.hidden", "a%2F..%2Fb"] {
        let r = h.get(&format!("/v2/{name}/tags/list"));
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(error_code(&r.text().unwrap()), "NAME_INVALID", "{name}");
        let r = h.post(&format!("/v2/{name}/blobs/uploads/"));
        assert_eq!(r.status(), 400, "{name}");
    }
    assert!(!reg.root().join("a").exists() && !reg.dir.path().join("b").exists());
}

fn base64_creds() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::USER,
        common::PASSWORD
    ))
}

#[test]
fn out_of_order_chunks_get_416_and_change_nothing() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let loc = h.start_upload("app");
    let patch = |range: &str, body: &[u8]| {
        h.req(Method::PATCH, &loc)
            .header("content-range", range)
            .header("content-type", "application/octet-stream")
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    let r = patch("0-4", b"hello");
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-4");
    // A chunk that skips ahead, and one that overlaps.
    assert_refused(patch("10-14", b"world"), 416, "BLOB_UPLOAD_INVALID");
    let r = patch("2-6", b"llo, ");
    assert_eq!(r.status(), 416);
    // The upload still holds exactly the first chunk.
    let r = h.get(&loc);
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-4");
    // In-order chunks finish it.
    assert_eq!(patch("5-10", b" world").status(), 202);
    let d = Digest::sha256_of(b"hello world");
    let r = h
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{d}"))
            .bytes()
            .unwrap()
            .as_ref(),
        b"hello world"
    );
}

#[test]
fn referrers_filter_by_artifact_type_and_report_the_subject() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let (subject, body) = h.push_image("app", "v1.0.0", &[b"l"]);
    let empty = h.push_blob("app", b"{}");
    let mut referrers = vec![];
    for (i, t) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let layer = h.push_blob("app", format!("payload {i}").as_bytes());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{t}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"text/plain","digest":"{layer}","size":9}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":{}}},"annotations":{{"n":"{i}"}}}}"#,
            body.len()
        );
        let d = Digest::sha256_of(m.as_bytes());
        let r = h.put_manifest("app", &d.to_string(), m.as_bytes());
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.headers()["oci-subject"].to_str().unwrap(),
            subject.to_string()
        );
        referrers.push(d);
    }
    let all: serde_json::Value = h
        .get(&format!("/v2/app/referrers/{subject}"))
        .json()
        .unwrap();
    assert_eq!(all["manifests"].as_array().unwrap().len(), 2);
    let r = h.get(&format!(
        "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"
    ));
    assert_eq!(
        r.headers()["oci-filters-applied"].to_str().unwrap(),
        "artifactType"
    );
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/vnd.oci.image.index.v1+json"
    );
    let v: serde_json::Value = r.json().unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], referrers[1].to_string());
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(list[0]["annotations"]["n"], "1");
}

#[test]
fn tag_list_paginates() {
    let reg = TestRegistry::start();
    let h = reg.http();
    for t in ["c", "a", "e", "b", "d"] {
        h.push_image("pages", t, &[b"x"]);
    }
    let r = h.get("/v2/pages/tags/list?n=2");
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["tags"],
        serde_json::json!(["a", "b"])
    );
    assert!(
        link.contains("last=b") && link.contains("rel=\"next\""),
        "{link}"
    );
    let r = h.get("/v2/pages/tags/list?n=2&last=b");
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["tags"],
        serde_json::json!(["c", "d"])
    );
    let r = h.get("/v2/pages/tags/list?n=2&last=d");
    assert!(r.headers().get("link").is_none());
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["tags"],
        serde_json::json!(["e"])
    );
    assert_eq!(h.get("/v2/nothing-here/tags/list").status(), 404);
}

#[test]
fn cross_repository_mount_links_without_copying() {
    let reg = TestRegistry::start();
    let h = reg.http();
    let d = h.push_blob("source/repo", b"shared layer");
    let files = reg.blob_files().len();
    let r = h
        .req(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={d}&from=source/repo"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/v2/target/repo/blobs/{d}")
    );
    assert_eq!(reg.blob_files().len(), files);
    assert_eq!(
        h.get(&format!("/v2/target/repo/blobs/{d}"))
            .bytes()
            .unwrap()
            .as_ref(),
        b"shared layer"
    );
    // Mounting from a repository that lacks the blob starts an upload instead.
    let other = Digest::sha256_of(b"absent");
    let r = h
        .req(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={other}&from=source/repo"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[test]
fn a_crash_mid_upload_exposes_nothing_and_restart_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let config = plumb_registry::RegistryConfig::default();
    {
        let reg = plumb_registry::Registry::open(&root, config.clone()).unwrap();
        let repo = plumb_oci::RepositoryName::parse("app").unwrap();
        let id = reg.start_upload(&repo).unwrap();
        // Bytes of an unfinished upload sit only in uploads/.
        std::fs::write(root.join("uploads").join(&id), b"partial").unwrap();
        assert_eq!(
            reg.blob_size(&repo, &Digest::sha256_of(b"partial")).ok(),
            None
        );
        // The process dies here (the registry is dropped without finishing).
    }
    let reg = plumb_registry::Registry::open(&root, config).unwrap();
    assert_eq!(std::fs::read_dir(root.join("uploads")).unwrap().count(), 0);
    let repo = plumb_oci::RepositoryName::parse("app").unwrap();
    assert!(
        reg.blob_size(&repo, &Digest::sha256_of(b"partial"))
            .is_err()
    );
}

#[test]
fn a_crash_between_an_uploads_intent_and_its_record_is_settled_at_open() {
    // An upload commits its intent, then its file is renamed into place and
    // fsynced, then a commit that is not fsynced records the blob. A crash
    // can lose that record, or come before the file is whole: the next open
    // records what is intact and removes what is not.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let config = plumb_registry::RegistryConfig::default();
    let repo = plumb_oci::RepositoryName::parse("app").unwrap();
    drop(plumb_registry::Registry::open(&root, config.clone()).unwrap());
    let blob_path = |d: &Digest| {
        let hex = d.hex();
        root.join("blobs/sha256").join(&hex[..2]).join(hex)
    };
    let whole = b"every byte of the blob".to_vec();
    let whole_d = Digest::sha256_of(&whole);
    let torn_d = Digest::sha256_of(b"what the client meant to send");
    let absent_d = Digest::sha256_of(b"never renamed into place");
    {
        let meta = plumb_registry::meta::Metadata::open(&root.join("metadata.redb")).unwrap();
        for (key, d) in [("u1", &whole_d), ("u2", &torn_d), ("u3", &absent_d)] {
            let intent = plumb_registry::meta::BlobIntent {
                digest: d.clone(),
                repo: "app".into(),
            };
            meta.add_intent(key, &intent).unwrap();
        }
    }
    std::fs::write(blob_path(&whole_d), &whole).unwrap();
    std::fs::write(blob_path(&torn_d), b"what the client").unwrap();

    let reg = plumb_registry::Registry::open(&root, config.clone()).unwrap();
    assert_eq!(reg.blob_size(&repo, &whole_d).unwrap(), whole.len() as u64);
    let (mut f, _) = reg.blob_open(&repo, &whole_d).unwrap();
    let mut back = vec![];
    std::io::Read::read_to_end(&mut f, &mut back).unwrap();
    assert_eq!(back, whole);
    assert!(reg.blob_size(&repo, &torn_d).is_err());
    assert!(!blob_path(&torn_d).exists(), "a torn file is removed");
    assert!(reg.blob_size(&repo, &absent_d).is_err());
    drop(reg);
    let meta = plumb_registry::meta::Metadata::open(&root.join("metadata.redb")).unwrap();
    assert!(
        meta.intents().unwrap().is_empty(),
        "every intent is settled"
    );
}

#[test]
fn large_chunked_uploads_are_hashed_across_chunks() {
    // Chunks past the size where hashing moves to its own thread; the hash
    // carries from one PATCH to the next and the final PUT checks it.
    let reg = TestRegistry::start();
    let h = reg.http();
    let data: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let upload = |digest: &Digest| {
        let loc = h.start_upload("big");
        let mut start = 0;
        for chunk in data[..3_000_000].chunks(1_000_000) {
            let r = h
                .req(Method::PATCH, &loc)
                .header(
                    "content-range",
                    format!("{start}-{}", start + chunk.len() - 1),
                )
                .header("content-type", "application/octet-stream")
                .body(chunk.to_vec())
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
            start += chunk.len();
        }
        h.req(Method::PUT, &format!("{loc}?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data[3_000_000..].to_vec())
            .send()
            .unwrap()
    };
    // The digest of all but the last byte: refused, nothing stored.
    let wrong = Digest::sha256_of(&data[..data.len() - 1]);
    assert_refused(upload(&wrong), 400, "DIGEST_INVALID");
    assert!(reg.blob_files().is_empty());
    // The right one: published, and it reads back byte for byte.
    let right = Digest::sha256_of(&data);
    assert_eq!(upload(&right).status(), 201);
    let back = h.get(&format!("/v2/big/blobs/{right}")).bytes().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back.as_ref() == data.as_slice());
    assert_eq!(
        std::fs::read_dir(reg.root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

/// The value of the first sample of `name` whose labels include every one
/// of `labels` (`key="value"` pairs), from a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_count_requests_bytes_refusals_and_gc_without_naming_repositories() {
    let reg = TestRegistry::start();
    let h = reg.http();
    // Pull rights are needed to read them.
    assert_eq!(reg.http().anonymous().get("/metrics").status(), 401);
    let layer = vec![7u8; 10_000];
    let (_, manifest) = h.push_image("team/secret-app", SHA_TAG, &[&layer]);
    let (_, other) = h.push_image("team/secret-app", "scratch", &[b"other"]);
    assert_eq!(
        h.put_manifest("team/secret-app", SHA_TAG, &other).status(),
        409
    );
    let d = Digest::sha256_of(&layer);
    let got = h.get(&format!("/v2/team/secret-app/blobs/{d}"));
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().unwrap().len(), layer.len());
    assert_eq!(h.post("/plumb/v1/gc").status(), 200);
    assert_eq!(h.post("/plumb/v1/gc?dry_run=true").status(), 200);

    let reader = reg.http().with_user(READER, READER_PASSWORD);
    let r = reader.get("/metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let requests = "plumb_registry_http_requests_total";
    assert_eq!(
        sample(
            &text,
            requests,
            &[r#"endpoint="manifest""#, r#"method="PUT""#, r#"code="409""#]
        ),
        Some(1.0),
        "{text}"
    );
    // Two images, each a config and one layer, pushed in single POSTs.
    assert_eq!(
        sample(
            &text,
            requests,
            &[r#"endpoint="uploads""#, r#"method="POST""#, r#"code="201""#]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            requests,
            &[r#"endpoint="blob""#, r#"method="GET""#, r#"code="200""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "plumb_registry_http_request_duration_seconds_count",
            &[r#"endpoint="blob""#, r#"method="GET""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "plumb_registry_policy_refusals_total",
            &[r#"policy="immutable_tags""#]
        ),
        Some(1.0),
        "{text}"
    );
    let received = sample(&text, "plumb_registry_received_bytes_total", &[]).unwrap();
    assert!(
        received >= (layer.len() + manifest.len()) as f64,
        "{received}: {text}"
    );
    assert_eq!(
        sample(&text, "plumb_registry_sent_bytes_total", &[]),
        Some(layer.len() as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, "plumb_registry_gc_runs_total", &[]),
        Some(1.0),
        "dry runs are not counted: {text}"
    );
    assert!(
        !text.contains("secret-app"),
        "a repository name in the metrics: {text}"
    );
    // Writing to it is not a thing.
    let r = h.req(Method::PUT, "/metrics").send().unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}
