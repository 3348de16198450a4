//! Signatures interoperate with cosign (built from its Go module), both ways
//! and in both of cosign's formats: the `sha256-<hex>.sig` simple-signing tag
//! and the Sigstore bundle referrer. Transparency log off: key-based only.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestRegistry, run, tool};
use plumb_oci::cosign::{CosignPublicKey, CosignSigningKey};
use plumb_oci::signing::{SignatureFormat, sign, verify};
use plumb_oci::{Digest, Reference};

const PASSWORD: &str = "correct horse";

fn cosign(reg: &TestRegistry, dir: &Path) -> Command {
    let mut c = Command::new(tool("cosign"));
    c.current_dir(dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("DOCKER_CONFIG", reg.docker_config())
        .env("HOME", reg.dir.path())
        .env("SIGSTORE_NO_CACHE", "1")
        .env("TUF_ROOT", reg.dir.path().join("tuf"));
    c
}

fn keypair(reg: &TestRegistry, name: &str) -> std::path::PathBuf {
    let dir = reg.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    run(cosign(reg, &dir).args(["generate-key-pair"]));
    dir
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn image(reg: &TestRegistry, repo: &str, tag: &str) -> (Reference, Digest) {
    let (d, _) = reg
        .http()
        .push_image(repo, tag, &[format!("{repo}:{tag}").as_bytes()]);
    (format!("{}/{repo}@{d}", reg.host()).parse().unwrap(), d)
}

fn cosign_sign(reg: &TestRegistry, keys: &Path, r: &Reference, bundle: bool) {
    run(cosign(reg, keys).args([
        "sign",
        "--key",
        "cosign.key",
        "--use-signing-config=false",
        "--tlog-upload=false",
        &format!("--new-bundle-format={bundle}"),
        "--yes",
        "--allow-http-registry",
        &r.to_string(),
    ]));
}

fn cosign_verify(
    reg: &TestRegistry,
    keys: &Path,
    r: &Reference,
    bundle: bool,
) -> std::process::Output {
    cosign(reg, keys)
        .args([
            "verify",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog=true",
            &format!("--new-bundle-format={bundle}"),
            "--allow-http-registry",
            &r.to_string(),
        ])
        .output()
        .unwrap()
}

fn read_keys(dir: &Path) -> (CosignSigningKey, CosignPublicKey) {
    let private = std::fs::read_to_string(dir.join("cosign.key")).unwrap();
    let public = std::fs::read_to_string(dir.join("cosign.pub")).unwrap();
    (
        CosignSigningKey::from_pem(&private, PASSWORD.as_bytes()).unwrap(),
        CosignPublicKey::from_pem(&public).unwrap(),
    )
}

#[test]
fn plumb_reads_cosign_key_files() {
    let reg = TestRegistry::start();
    let keys = keypair(&reg, "keys");
    let (private, public) = read_keys(&keys);
    let sig = private.sign(b"message");
    assert!(public.verify(b"message", &sig).unwrap());
    let text = std::fs::read_to_string(keys.join("cosign.key")).unwrap();
    assert!(CosignSigningKey::from_pem(&text, b"wrong password").is_err());
}

#[test]
fn cosign_signs_and_plumb_verifies_both_formats() {
    let reg = TestRegistry::start();
    let keys = keypair(&reg, "keys");
    let stranger = keypair(&reg, "stranger");
    let (_, public) = read_keys(&keys);
    let (_, stranger_public) = read_keys(&stranger);
    let client = reg.client();
    for (bundle, format) in [
        (true, SignatureFormat::Bundle),
        (false, SignatureFormat::Tag),
    ] {
        let (r, d) = image(
            &reg,
            "signed/by-cosign",
            if bundle { "bundle" } else { "tag" },
        );
        // Unsigned: nothing verifies.
        let report = rt()
            .block_on(verify(&client, &r, &public, SignatureFormat::Both))
            .unwrap();
        assert!(report.verified.is_empty());
        cosign_sign(&reg, &keys, &r, bundle);
        let report = rt()
            .block_on(verify(&client, &r, &public, SignatureFormat::Both))
            .unwrap();
        assert_eq!(report.digest, d);
        assert_eq!(report.verified.len(), 1, "{report:?}");
        assert_eq!(report.verified[0].format, format);
        // Another key verifies nothing and sees the signature as rejected.
        let report = rt()
            .block_on(verify(&client, &r, &stranger_public, SignatureFormat::Both))
            .unwrap();
        assert!(report.verified.is_empty());
        assert_eq!(report.rejected, 1);
    }
}

#[test]
fn plumb_signs_and_cosign_verifies_both_formats() {
    let reg = TestRegistry::start();
    let keys = keypair(&reg, "keys");
    let stranger = keypair(&reg, "stranger");
    let (private, _) = read_keys(&keys);
    let client = reg.client();
    for (bundle, format) in [
        (true, SignatureFormat::Bundle),
        (false, SignatureFormat::Tag),
    ] {
        let (r, d) = image(
            &reg,
            "signed/by-plumb",
            if bundle { "bundle" } else { "tag" },
        );
        // cosign refuses before plumb signs.
        assert!(!cosign_verify(&reg, &keys, &r, bundle).status.success());
        let report = rt()
            .block_on(sign(&client, &r, &private, format, None))
            .unwrap();
        assert_eq!(report.digest, d);
        let out = cosign_verify(&reg, &keys, &r, bundle);
        assert!(
            out.status.success(),
            "cosign verify ({format:?}) failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            claims[0]["critical"]["image"]["docker-manifest-digest"],
            d.to_string()
        );
        // And cosign with another key refuses it.
        assert!(!cosign_verify(&reg, &stranger, &r, bundle).status.success());
    }
}

#[test]
fn signing_twice_appends_to_the_signature_tag() {
    let reg = TestRegistry::start();
    let keys = keypair(&reg, "keys");
    let other = keypair(&reg, "other");
    let (k1, p1) = read_keys(&keys);
    let (k2, p2) = read_keys(&other);
    let client = reg.client();
    let (r, d) = image(&reg, "signed/twice", "v1.0.0");
    rt().block_on(sign(&client, &r, &k1, SignatureFormat::Tag, None))
        .unwrap();
    // Same key again: no duplicate layer.
    rt().block_on(sign(&client, &r, &k1, SignatureFormat::Tag, None))
        .unwrap();
    rt().block_on(sign(&client, &r, &k2, SignatureFormat::Tag, None))
        .unwrap();
    let m: serde_json::Value = reg
        .http()
        .get(&format!(
            "/v2/signed/twice/manifests/{}",
            d.cosign_signature_tag()
        ))
        .json()
        .unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
    for p in [&p1, &p2] {
        let rep = rt()
            .block_on(verify(&client, &r, p, SignatureFormat::Tag))
            .unwrap();
        assert_eq!(rep.verified.len(), 1);
        assert_eq!(rep.rejected, 1);
    }
    // cosign accepts the combined tag too.
    assert!(cosign_verify(&reg, &other, &r, false).status.success());
}
