use serde_json::json;

use super::*;

fn values(pairs: &[(&str, &str)]) -> Values {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Zeroizing::new(v.as_bytes().to_vec())))
        .collect()
}

#[test]
fn references_parse_by_scheme() {
    let r = parse("vault://kv/data/app#password").expect("vault");
    assert_eq!(
        r.source,
        Source::Vault {
            path: "kv/data/app".into()
        }
    );
    assert_eq!(r.field.as_deref(), Some("password"));
    let r = parse("k8s://team-a/db#pw").expect("k8s");
    assert_eq!(
        r.source,
        Source::Kubernetes {
            namespace: Some("team-a".into()),
            name: "db".into()
        }
    );
    let r = parse("k8s://db").expect("k8s without namespace");
    assert_eq!(r.field, None);
    let r = parse("file:///run/secrets/db#password").expect("file");
    assert_eq!(
        r.source,
        Source::File {
            path: "/run/secrets/db".into()
        }
    );
}

#[test]
fn bad_references_say_what_is_wrong() {
    for (uri, needle) in [
        ("kv/data/app", "expected vault://"),
        ("s3://bucket/key", "unknown scheme s3://"),
        ("vault://kv/../sys/raw#x", "Vault path"),
        ("vault://kv/data/app#", "empty #FIELD"),
        ("k8s://a/b/c#x", "k8s://NAMESPACE/NAME"),
        ("k8s://Team/db#x", "Kubernetes names"),
        ("file://relative/path#x", "absolute path"),
    ] {
        let e = parse(uri).expect_err(uri);
        assert!(e.to_string().contains(needle), "{uri}: {e}");
        assert!(e.to_string().starts_with(uri), "{uri}: {e}");
    }
}

#[test]
fn annotations_name_the_keys_they_fill() {
    let secret = json!({
        "kind": "Secret",
        "metadata": {"name": "db", "annotations": {
            "plumb.dev/secret-ref": "vault://kv/data/db",
            "plumb.dev/secret-ref.password": "k8s://src#pw",
            "plumb.dev/secret-ref.token": "file:///run/token",
            "other": "x"
        }}
    });
    assert!(has_refs(&secret));
    let w = wanted(&secret).expect("wanted");
    let keys: Vec<_> = w.iter().map(|w| w.key.clone()).collect();
    assert_eq!(
        keys,
        vec![None, Some("password".into()), Some("token".into())]
    );
    let bulk_field = json!({"kind": "Secret", "metadata": {"annotations": {
        "plumb.dev/secret-ref": "vault://kv/data/db#user"}}});
    assert_eq!(
        wanted(&bulk_field).expect("wanted")[0].key.as_deref(),
        Some("user")
    );
    let bad_key = json!({"kind": "Secret", "metadata": {"annotations": {
        "plumb.dev/secret-ref.a/b": "vault://kv/data/db#user"}}});
    let e = wanted(&bad_key).expect_err("bad key");
    assert!(e.to_string().contains("valid Secret key"), "{e}");
    let config_map = json!({"kind": "ConfigMap", "metadata": {"annotations": {
        "plumb.dev/secret-ref": "vault://kv/data/db"}}});
    assert!(!has_refs(&config_map));
}

#[test]
fn select_takes_one_field_or_all() {
    let w = |uri: &str, key: Option<&str>| Wanted {
        annotation: REF_ANNOTATION.into(),
        reference: parse(uri).expect("parse"),
        key: key.map(String::from),
    };
    let src = values(&[("user", "app"), ("pw", "s3cr3t")]);
    let one = select(&w("vault://kv/data/x#pw", Some("password")), src.clone()).expect("one");
    assert_eq!(one.keys().collect::<Vec<_>>(), vec!["password"]);
    assert_eq!(one["password"].as_slice(), b"s3cr3t");
    let all = select(&w("vault://kv/data/x", None), src.clone()).expect("all");
    assert_eq!(all.len(), 2);
    let e = select(&w("vault://kv/data/x#nope", Some("nope")), src.clone()).expect_err("missing");
    assert!(e.to_string().contains("no field nope"), "{e}");
    assert!(!e.to_string().contains("s3cr3t"));
    let e = select(&w("vault://kv/data/x", Some("k")), src).expect_err("ambiguous");
    assert!(e.to_string().contains("2 fields"), "{e}");
}

#[test]
fn fill_writes_data_and_a_hash_that_follows_the_values() {
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "annotations": {"plumb.dev/secret-ref.password": "k8s://src#pw"}},
        "stringData": {"password": "", "user": "app"}
    });
    let v1 = values(&[("password", "one")]);
    fill(&mut secret, &v1).expect("fill");
    assert_eq!(secret["data"]["password"], "b25l");
    assert_eq!(secret["stringData"], json!({"user": "app"}));
    let h1 = secret["metadata"]["annotations"][HASH_ANNOTATION]
        .as_str()
        .expect("hash")
        .to_string();
    assert!(h1.starts_with("sha256:") && !h1.contains("one"));
    let v2 = values(&[("password", "two")]);
    assert_ne!(hash(&v1), hash(&v2));
    // Key and value boundaries are part of the hash.
    assert_ne!(hash(&values(&[("ab", "c")])), hash(&values(&[("a", "bc")])));
    assert_eq!(h1, hash(&v1));
}

#[test]
fn files_are_read_only_under_their_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("secrets");
    std::fs::create_dir_all(root.join("db")).expect("mkdir");
    std::fs::write(root.join("db/password"), "pw-from-dir").expect("write");
    std::fs::write(root.join("db/user"), "app").expect("write");
    std::fs::write(root.join("app.env"), "# c\nTOKEN=\"abc\"\nexport MODE=x\n").expect("write");
    std::fs::write(root.join("app.json"), r#"{"a": "1", "n": 2}"#).expect("write");
    std::fs::write(root.join("raw"), "whole\nfile").expect("write");
    std::fs::write(dir.path().join("outside"), "nope").expect("write");
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).expect("link");
    let roots = FileRoots::new([root.clone()]);
    let w = |uri: String, key: Option<&str>| Wanted {
        annotation: REF_ANNOTATION.into(),
        reference: parse(&uri).expect("parse"),
        key: key.map(String::from),
    };
    let p = |rel: &str| root.join(rel).display().to_string();

    let all = roots
        .read(&root.join("db"), &w(format!("file://{}", p("db")), None))
        .expect("dir");
    assert_eq!(all.keys().collect::<Vec<_>>(), vec!["password", "user"]);
    let one = roots
        .read(
            &root.join("db"),
            &w(format!("file://{}#password", p("db")), Some("password")),
        )
        .expect("dir field");
    assert_eq!(one["password"].as_slice(), b"pw-from-dir");
    let env = roots
        .read(
            &root.join("app.env"),
            &w(format!("file://{}", p("app.env")), None),
        )
        .expect("dotenv");
    assert_eq!(env["TOKEN"].as_slice(), b"abc");
    assert_eq!(env["MODE"].as_slice(), b"x");
    let json = roots
        .read(
            &root.join("app.json"),
            &w(format!("file://{}", p("app.json")), None),
        )
        .expect("json");
    assert_eq!(json["n"].as_slice(), b"2");
    let raw = roots
        .read(
            &root.join("raw"),
            &w(format!("file://{}", p("raw")), Some("k")),
        )
        .expect("raw");
    let raw = select(&w(format!("file://{}", p("raw")), Some("k")), raw).expect("select");
    assert_eq!(raw["k"].as_slice(), b"whole\nfile");

    let e = roots
        .read(
            &root.join("link"),
            &w(format!("file://{}", p("link")), Some("k")),
        )
        .expect_err("link out");
    assert!(
        e.to_string().contains("outside every --secret-ref-root"),
        "{e}"
    );
    let e = roots
        .read(
            &root.join("db"),
            &w(format!("file://{}#../../outside", p("db")), Some("k")),
        )
        .expect_err("escape");
    assert!(e.to_string().contains("outside"), "{e}");
    let e = FileRoots::default()
        .read(
            &root.join("raw"),
            &w(format!("file://{}", p("raw")), Some("k")),
        )
        .expect_err("off");
    assert!(e.to_string().contains("--secret-ref-root"), "{e}");
}
