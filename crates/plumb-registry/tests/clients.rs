//! Real OCI clients against plumb's registry: crane, oras and skopeo each push
//! an image and an artifact and pull them back byte-identical, and content one
//! client pushed is pulled intact by the others.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{PASSWORD, TestRegistry, USER, run, tool};
use plumb_oci::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Write an OCI image layout holding one single-layer image tagged `tag`;
/// returns the manifest digest and every blob by digest.
fn make_layout(dir: &Path, tag: &str, payload: &str) -> (Digest, BTreeMap<String, Vec<u8>>) {
    let mut tar_bytes = vec![];
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(payload.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "hello.txt", payload.as_bytes())
            .unwrap();
        b.finish().unwrap();
    }
    let diff_id = Digest::sha256_of(&tar_bytes);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(vec![], flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    let layer = gz.finish().unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    )
    .into_bytes();
    let (ld, cd) = (Digest::sha256_of(&layer), Digest::sha256_of(&config));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    write_layout(dir, tag, manifest, &[layer, config])
}

/// Write an OCI image layout whose index names `manifest` as `tag`, with
/// the blobs it references; returns the manifest digest and every blob
/// (the manifest too) by digest.
fn write_layout(
    dir: &Path,
    tag: &str,
    manifest: Vec<u8>,
    blobs: &[Vec<u8>],
) -> (Digest, BTreeMap<String, Vec<u8>>) {
    let md = Digest::sha256_of(&manifest);
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let mut by_digest = BTreeMap::new();
    for b in blobs.iter().chain([&manifest]) {
        let d = Digest::sha256_of(b);
        std::fs::write(blobs_dir.join(d.hex()), b).unwrap();
        by_digest.insert(d.to_string(), b.clone());
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    (md, by_digest)
}

/// Blobs of an OCI layout, by digest.
fn layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for alg in ["sha256", "sha512"] {
        let Ok(rd) = std::fs::read_dir(dir.join("blobs").join(alg)) else {
            continue;
        };
        for e in rd.flatten() {
            out.insert(
                format!("{alg}:{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

/// The manifest digest an OCI layout's index names.
fn layout_manifest_digest(dir: &Path) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

fn assert_same_content(
    original: &BTreeMap<String, Vec<u8>>,
    pulled: &BTreeMap<String, Vec<u8>>,
    who: &str,
) {
    for (d, bytes) in original {
        let got = pulled
            .get(d)
            .unwrap_or_else(|| panic!("{who}: blob {d} missing after the round trip"));
        assert!(got == bytes, "{who}: blob {d} differs after the round trip");
        assert_eq!(
            &Digest::sha256_of(got).to_string(),
            d,
            "{who}: blob content does not hash to its name"
        );
    }
}

/// The layout at `dst` names manifest `digest` and holds every blob of
/// `original`, byte-identical.
#[track_caller]
fn assert_layout_holds(
    dst: &Path,
    digest: &Digest,
    original: &BTreeMap<String, Vec<u8>>,
    who: &str,
) {
    assert_eq!(layout_manifest_digest(dst), digest.to_string());
    assert_same_content(original, &layout_blobs(dst), who);
}

fn crane(reg: &TestRegistry) -> Command {
    let mut c = Command::new(tool("crane"));
    c.env("DOCKER_CONFIG", reg.docker_config())
        .arg("--insecure");
    c
}

fn oras(reg: &TestRegistry) -> Command {
    let mut c = Command::new(tool("oras"));
    c.env("DOCKER_CONFIG", reg.docker_config())
        .env("HOME", reg.dir.path());
    c
}

fn skopeo() -> Command {
    let mut c = Command::new(tool("skopeo"));
    c.arg("--insecure-policy");
    c
}

fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

/// What `client`'s image round trip starts from: a single-layer image tagged
/// `v1` in an OCI layout under the registry's scratch `src`; returns the
/// layout, the manifest digest and every blob by digest.
fn source_image(reg: &TestRegistry, client: &str) -> (PathBuf, Digest, BTreeMap<String, Vec<u8>>) {
    let src = scratch(reg, "src");
    let (digest, blobs) = make_layout(&src, "v1", &format!("hello from {client}"));
    (src, digest, blobs)
}

/// crane pushes the OCI layout at `src` to `r`.
fn crane_push(reg: &TestRegistry, src: &Path, r: &str) {
    run(crane(reg).arg("push").arg(src).arg(r));
}

/// crane pulls `r` into an OCI layout at `dst`.
fn crane_pull(reg: &TestRegistry, r: &str, dst: &Path) {
    run(crane(reg).args(["pull", "--format=oci", r]).arg(dst));
}

/// skopeo copies the image tagged `v1` in the OCI layout at `src` to `to`
/// (a `docker://` reference).
fn skopeo_push(src: &Path, to: &str) {
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds()])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(to));
}

/// skopeo copies `from` (a `docker://` reference) into an OCI layout at
/// `dst`, tagged `v1`.
fn skopeo_pull(from: &str, dst: &Path) {
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds", &creds()])
        .arg(from)
        .arg(format!("oci:{}:v1", dst.display())));
}

fn scratch(reg: &TestRegistry, name: &str) -> PathBuf {
    let p = reg.dir.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn crane_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let (src, digest, blobs) = source_image(&reg, "crane");
    let r = format!("{}/clients/crane:v1", reg.host());
    crane_push(&reg, &src, &r);
    let out = run(crane(&reg).args(["digest", &r]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        digest.to_string()
    );
    let dst = reg.dir.path().join("pulled");
    crane_pull(&reg, &r, &dst);
    assert_layout_holds(&dst, &digest, &blobs, "crane");
}

#[test]
fn oras_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let (src, digest, blobs) = source_image(&reg, "oras");
    let r = format!("{}/clients/oras:v1", reg.host());
    run(oras(&reg)
        .args(["cp", "--to-plain-http", "--from-oci-layout"])
        .arg(format!("{}:v1", src.display()))
        .arg(&r));
    let dst = reg.dir.path().join("pulled");
    run(oras(&reg)
        .args(["cp", "--from-plain-http", "--to-oci-layout", &r])
        .arg(format!("{}:v1", dst.display())));
    assert_layout_holds(&dst, &digest, &blobs, "oras");
}

#[test]
fn skopeo_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let (src, digest, blobs) = source_image(&reg, "skopeo");
    let r = format!("docker://{}/clients/skopeo:v1", reg.host());
    skopeo_push(&src, &r);
    // The registry holds exactly the manifest skopeo was given.
    let served = reg.http().get("/v2/clients/skopeo/manifests/v1");
    assert_eq!(
        served.headers()["docker-content-digest"].to_str().unwrap(),
        digest.to_string()
    );
    let dst = reg.dir.path().join("pulled");
    skopeo_pull(&r, &dst);
    assert_layout_holds(&dst, &digest, &blobs, "skopeo");
}

#[test]
fn an_artifact_pushed_by_oras_round_trips_through_oras_crane_and_skopeo() {
    let reg = TestRegistry::start();
    let work = scratch(&reg, "work");
    let payload = b"artifact payload: not an image\n".repeat(100);
    std::fs::write(work.join("report.txt"), &payload).unwrap();
    let r = format!("{}/clients/artifact:v1", reg.host());
    run(oras(&reg)
        .current_dir(&work)
        .args([
            "push",
            "--plain-http",
            "--artifact-type",
            "application/vnd.plumb.test.report",
            &r,
        ])
        .arg("report.txt:text/plain"));
    // oras pull: the same file back.
    let out = scratch(&reg, "oras-out");
    run(oras(&reg)
        .current_dir(&out)
        .args(["pull", "--plain-http", &r]));
    assert_eq!(std::fs::read(out.join("report.txt")).unwrap(), payload);
    // crane: the manifest names the artifact type and the layer is the file.
    let m = run(crane(&reg).args(["manifest", &r]));
    let manifest: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.plumb.test.report"
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = run(crane(&reg).args(["blob", &format!("{}/clients/artifact@{layer}", reg.host())]));
    assert_eq!(blob.stdout, payload);
    // crane copies it to another repository, byte-identical by digest.
    let copy = format!("{}/clients/artifact-copy:v1", reg.host());
    run(crane(&reg).args(["copy", &r, &copy]));
    let d1 = run(crane(&reg).args(["digest", &r])).stdout;
    let d2 = run(crane(&reg).args(["digest", &copy])).stdout;
    assert_eq!(d1, d2);
    // skopeo pulls it into an OCI layout, byte-identical.
    let dst = reg.dir.path().join("skopeo-out");
    skopeo_pull(&format!("docker://{r}"), &dst);
    let pulled = layout_blobs(&dst);
    assert_eq!(pulled.get(&layer), Some(&payload));
    assert_eq!(
        layout_manifest_digest(&dst),
        String::from_utf8_lossy(&d1).trim()
    );
}

#[test]
fn an_artifact_pushed_by_skopeo_and_crane_round_trips() {
    let reg = TestRegistry::start();
    // An artifact in an OCI layout: empty config, one text layer, artifactType.
    let src = scratch(&reg, "src");
    let payload = b"sbom: nothing to declare\n".to_vec();
    let empty = b"{}".to_vec();
    let (ld, ed) = (Digest::sha256_of(&payload), Digest::sha256_of(&empty));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.plumb.test.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{ed}","size":2}},"layers":[{{"mediaType":"text/plain","digest":"{ld}","size":{}}}]}}"#,
        payload.len()
    )
    .into_bytes();
    let (md, blobs) = write_layout(&src, "v1", manifest, &[payload, empty]);
    // skopeo pushes it and pulls it back.
    let r = format!("{}/clients/skopeo-artifact:v1", reg.host());
    skopeo_push(&src, &format!("docker://{r}"));
    let dst = reg.dir.path().join("skopeo-out");
    skopeo_pull(&format!("docker://{r}"), &dst);
    assert_layout_holds(&dst, &md, &blobs, "skopeo artifact");
    // crane pushes the same layout elsewhere and pulls it back.
    let r2 = format!("{}/clients/crane-artifact:v1", reg.host());
    crane_push(&reg, &src, &r2);
    let dst2 = reg.dir.path().join("crane-out");
    crane_pull(&reg, &r2, &dst2);
    assert_layout_holds(&dst2, &md, &blobs, "crane artifact");
}
