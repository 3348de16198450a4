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
    let md = Digest::sha256_of(&manifest);
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let mut blobs = BTreeMap::new();
    for (d, b) in [(&ld, &layer), (&cd, &config), (&md, &manifest)] {
        std::fs::write(blobs_dir.join(d.hex()), b).unwrap();
        blobs.insert(d.to_string(), b.clone());
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
    (md, blobs)
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

fn scratch(reg: &TestRegistry, name: &str) -> PathBuf {
    let p = reg.dir.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn crane_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let src = scratch(&reg, "src");
    let (digest, blobs) = make_layout(&src, "v1", "hello from crane");
    let r = format!("{}/clients/crane:v1", reg.host());
    run(crane(&reg).args(["push"]).arg(&src).arg(&r));
    let out = run(crane(&reg).args(["digest", &r]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        digest.to_string()
    );
    let dst = reg.dir.path().join("pulled");
    run(crane(&reg).args(["pull", "--format=oci", &r]).arg(&dst));
    assert_eq!(layout_manifest_digest(&dst), digest.to_string());
    assert_same_content(&blobs, &layout_blobs(&dst), "crane");
}

#[test]
fn oras_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let src = scratch(&reg, "src");
    let (digest, blobs) = make_layout(&src, "v1", "hello from oras");
    let r = format!("{}/clients/oras:v1", reg.host());
    run(oras(&reg)
        .args(["cp", "--to-plain-http", "--from-oci-layout"])
        .arg(format!("{}:v1", src.display()))
        .arg(&r));
    let dst = reg.dir.path().join("pulled");
    run(oras(&reg)
        .args(["cp", "--from-plain-http", "--to-oci-layout", &r])
        .arg(format!("{}:v1", dst.display())));
    assert_eq!(layout_manifest_digest(&dst), digest.to_string());
    assert_same_content(&blobs, &layout_blobs(&dst), "oras");
}

#[test]
fn skopeo_pushes_and_pulls_an_image_byte_identical() {
    let reg = TestRegistry::start();
    let src = scratch(&reg, "src");
    let (digest, blobs) = make_layout(&src, "v1", "hello from skopeo");
    let r = format!("docker://{}/clients/skopeo:v1", reg.host());
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds()])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(&r));
    // The registry holds exactly the manifest skopeo was given.
    let served = reg.http().get("/v2/clients/skopeo/manifests/v1");
    assert_eq!(
        served.headers()["docker-content-digest"].to_str().unwrap(),
        digest.to_string()
    );
    let dst = reg.dir.path().join("pulled");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds", &creds()])
        .arg(&r)
        .arg(format!("oci:{}:v1", dst.display())));
    assert_eq!(layout_manifest_digest(&dst), digest.to_string());
    assert_same_content(&blobs, &layout_blobs(&dst), "skopeo");
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
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds", &creds()])
        .arg(format!("docker://{r}"))
        .arg(format!("oci:{}:v1", dst.display())));
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
    let md = Digest::sha256_of(&manifest);
    std::fs::create_dir_all(src.join("blobs/sha256")).unwrap();
    let mut blobs = BTreeMap::new();
    for (d, b) in [(&ld, &payload), (&ed, &empty), (&md, &manifest)] {
        std::fs::write(src.join("blobs/sha256").join(d.hex()), b).unwrap();
        blobs.insert(d.to_string(), b.clone());
    }
    std::fs::write(src.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        src.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    // skopeo pushes it and pulls it back.
    let r = format!("{}/clients/skopeo-artifact:v1", reg.host());
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds()])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{r}")));
    let dst = reg.dir.path().join("skopeo-out");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds", &creds()])
        .arg(format!("docker://{r}"))
        .arg(format!("oci:{}:v1", dst.display())));
    assert_eq!(layout_manifest_digest(&dst), md.to_string());
    assert_same_content(&blobs, &layout_blobs(&dst), "skopeo artifact");
    // crane pushes the same layout elsewhere and pulls it back.
    let r2 = format!("{}/clients/crane-artifact:v1", reg.host());
    run(crane(&reg).arg("push").arg(&src).arg(&r2));
    let dst2 = reg.dir.path().join("crane-out");
    run(crane(&reg).args(["pull", "--format=oci", &r2]).arg(&dst2));
    assert_eq!(layout_manifest_digest(&dst2), md.to_string());
    assert_same_content(&blobs, &layout_blobs(&dst2), "crane artifact");
}
