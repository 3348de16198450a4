//! Signatures interoperate with cosign (built from its Go module), both ways
//! and in both of cosign's formats: the `sha256-<hex>.sig` simple-signing tag
//! and the Sigstore bundle referrer. Transparency log off: key-based only.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestRegistry, rt, run, tool};
use plumb_oci::client::RegistryClient;
use plumb_oci::cosign::{CosignPublicKey, CosignSigningKey};
use plumb_oci::signing::{SignReport, SignatureFormat, VerifyReport, sign, verify};
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

fn keypair(reg: &TestRegistry, name: &str) -> PathBuf {
    let dir = reg.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    run(cosign(reg, &dir).args(["generate-key-pair"]));
    dir
}

fn image(reg: &TestRegistry, repo: &str, tag: &str) -> (Reference, Digest) {
    let (d, _) = reg
        .http()
        .push_image(repo, tag, &[format!("{repo}:{tag}").as_bytes()]);
    (format!("{}/{repo}@{d}", reg.host()).parse().unwrap(), d)
}

/// Each of cosign's two formats (`bundle`: whether it is the Sigstore
/// bundle), with an image of its own in `repo` tagged after it, pushed
/// when the iteration reaches it.
fn image_per_format<'a>(
    reg: &'a TestRegistry,
    repo: &'a str,
) -> impl Iterator<Item = (bool, SignatureFormat, Reference, Digest)> + 'a {
    [
        (true, SignatureFormat::Bundle),
        (false, SignatureFormat::Tag),
    ]
    .into_iter()
    .map(move |(bundle, format)| {
        let (r, d) = image(reg, repo, if bundle { "bundle" } else { "tag" });
        (bundle, format, r, d)
    })
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

/// plumb signs `r` with `key`.
fn plumb_sign(
    client: &RegistryClient,
    r: &Reference,
    key: &CosignSigningKey,
    format: SignatureFormat,
) -> SignReport {
    rt().block_on(sign(client, r, key, format, None)).unwrap()
}

/// plumb verifies `r`'s signatures under `key`.
fn plumb_verify(
    client: &RegistryClient,
    r: &Reference,
    key: &CosignPublicKey,
    format: SignatureFormat,
) -> VerifyReport {
    rt().block_on(verify(client, r, key, format)).unwrap()
}

/// Where the tests with two signers start: a registry, the directories of
/// two key pairs cosign generated in it (`keys`, and `other` as named), and
/// a plumb client of the registry.
fn two_signers(other: &str) -> (TestRegistry, PathBuf, PathBuf, RegistryClient) {
    let reg = TestRegistry::start();
    let keys = keypair(&reg, "keys");
    let other = keypair(&reg, other);
    let client = reg.client();
    (reg, keys, other, client)
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
    let (reg, keys, stranger, client) = two_signers("stranger");
    let (_, public) = read_keys(&keys);
    let (_, stranger_public) = read_keys(&stranger);
    for (bundle, format, r, d) in image_per_format(&reg, "signed/by-cosign") {
        // Unsigned: nothing verifies.
        let report = plumb_verify(&client, &r, &public, SignatureFormat::Both);
        assert!(report.verified.is_empty());
        cosign_sign(&reg, &keys, &r, bundle);
        let report = plumb_verify(&client, &r, &public, SignatureFormat::Both);
        assert_eq!(report.digest, d);
        assert_eq!(report.verified.len(), 1, "{report:?}");
        assert_eq!(report.verified[0].format, format);
        // Another key verifies nothing and sees the signature as rejected.
        let report = plumb_verify(&client, &r, &stranger_public, SignatureFormat::Both);
        assert!(report.verified.is_empty());
        assert_eq!(report.rejected, 1);
    }
}

#[test]
fn plumb_signs_and_cosign_verifies_both_formats() {
    let (reg, keys, stranger, client) = two_signers("stranger");
    let (private, _) = read_keys(&keys);
    for (bundle, format, r, d) in image_per_format(&reg, "signed/by-plumb") {
        // cosign refuses before plumb signs.
        assert!(!cosign_verify(&reg, &keys, &r, bundle).status.success());
        let report = plumb_sign(&client, &r, &private, format);
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
    let (reg, keys, other, client) = two_signers("other");
    let (k1, p1) = read_keys(&keys);
    let (k2, p2) = read_keys(&other);
    let (r, d) = image(&reg, "signed/twice", "v1.0.0");
    plumb_sign(&client, &r, &k1, SignatureFormat::Tag);
    // Same key again: no duplicate layer.
    plumb_sign(&client, &r, &k1, SignatureFormat::Tag);
    plumb_sign(&client, &r, &k2, SignatureFormat::Tag);
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
        let rep = plumb_verify(&client, &r, p, SignatureFormat::Tag);
        assert_eq!(rep.verified.len(), 1);
        assert_eq!(rep.rejected, 1);
    }
    // cosign accepts the combined tag too.
    assert!(cosign_verify(&reg, &other, &r, false).status.success());
}
