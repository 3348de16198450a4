//! `plumb artifact sbom` end to end: a real Rust binary built with
//! cargo-auditable and a real Go binary, real Debian and Alpine package
//! databases and language lock files, assembled into an image with crane and
//! pushed to plumb's own registry; a second layer's whiteout deletes a file.
//! The image and the same content as a directory must list exactly the same
//! packages, and the CycloneDX and SPDX documents must carry their purls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use plumb_testenv::{KillOnDrop, output_text as text, run_ok as ok, tool_path, wait_for_port};
use serde_json::Value;

fn plumb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

/// The two binaries, built once per `cargo test` run under the target dir.
struct Binaries {
    rust: PathBuf,
    rust_lock: PathBuf,
    go: PathBuf,
    go_version: String,
}

fn binaries() -> &'static Binaries {
    static BIN: OnceLock<Binaries> = OnceLock::new();
    BIN.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sbom-fixtures");
        // A Rust program depending on two crates from the local registry cache.
        let krate = base.join("hello-audit");
        std::fs::create_dir_all(krate.join("src")).unwrap();
        std::fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"hello-audit\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.15\"\nsmallvec = \"=1.16.6\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(
            krate.join("src/main.rs"),
            "fn main() {\n    let mut b = itoa::Buffer::new();\n    let v: smallvec::SmallVec<[u8; 4]> = smallvec::smallvec![1, 2];\n    println!(\"{}\", b.format(v.len()));\n}\n",
        )
        .unwrap();
        let auditable = tool_path("cargo-auditable");
        let path = format!(
            "{}:{}",
            auditable.parent().unwrap().display(),
            std::env::var("PATH").unwrap()
        );
        ok(Command::new("cargo")
            .args(["auditable", "build", "--offline", "--quiet"])
            .current_dir(&krate)
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", krate.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET"));
        // A Go program depending on a module from the local module cache.
        let go = plumb_testenv::go_text_binary(&base.join("hello-go"), "hello-go");
        let go_version = ok(Command::new("go").args(["env", "GOVERSION"]));
        Binaries {
            rust: krate.join("target/debug/hello-audit"),
            rust_lock: krate.join("Cargo.lock"),
            go,
            go_version: go_version.trim_start_matches("go").to_owned(),
        }
    })
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const DPKG_STATUS: &str = "\
Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u7
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.13-1~deb12u1

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: nano
Status: deinstall ok config-files
Architecture: amd64
Version: 7.2-1
";

const APK_INSTALLED: &str = "\
C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=
P:musl
V:1.2.5-r0
A:x86_64
S:411323
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>

C:Q1Hj1r0OITXDmXY2ZUb7kZ8b0oGXU=
P:libcrypto3
V:3.3.1-r3
A:x86_64
o:openssl

C:Q1A8QbeXM0K1Nad3WS/h+MTBgl7aI=
P:busybox
V:1.36.1-r29
A:x86_64
o:busybox
";

const PACKAGE_LOCK: &str = r#"{
  "name": "web",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": { "name": "web", "version": "1.0.0", "dependencies": { "express": "4.19.2" } },
    "node_modules/express": { "version": "4.19.2" },
    "node_modules/express/node_modules/debug": { "version": "2.6.9" },
    "node_modules/@types/node": { "version": "20.11.30", "dev": true }
  }
}
"#;

/// The image's content, laid out in `root`.
fn populate(root: &Path) {
    let b = binaries();
    write(
        root,
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n",
    );
    write(root, "var/lib/dpkg/status", DPKG_STATUS.as_bytes());
    write(
        root,
        "var/lib/dpkg/status.d/tzdata",
        b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
    );
    write(
        root,
        "var/lib/dpkg/status.d/tzdata.md5sums",
        b"abc  usr/share/zoneinfo/UTC\n",
    );
    write(root, "lib/apk/db/installed", APK_INSTALLED.as_bytes());
    write(root, "etc/alpine-release", b"3.20.3\n");
    write(root, "srv/web/package-lock.json", PACKAGE_LOCK.as_bytes());
    write(
        root,
        "usr/lib/python3/site-packages/Jinja2-3.1.4.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 3.1.4\nSummary: A very fast and expressive template engine.\n\nJinja is a template engine.\n",
    );
    write(
        root,
        "srv/api/requirements.txt",
        b"# deleted by the upper layer\nFlask==2.2.5\n",
    );
    write(
        root,
        "srv/tools/requirements.txt",
        b"urllib3==1.26.18\nrequests>=2\n",
    );
    write(
        root,
        "srv/app/Cargo.lock",
        &std::fs::read(&b.rust_lock).unwrap(),
    );
    for (from, to) in [
        (&b.rust, "usr/local/bin/hello-audit"),
        (&b.go, "usr/local/bin/hello-go"),
    ] {
        write(root, to, &std::fs::read(from).unwrap());
        let mut perm = std::fs::metadata(from).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(root.join(to), perm).unwrap();
    }
}

/// What both the image and the directory must list: (purl, location).
fn expected() -> BTreeSet<(String, String)> {
    let go = &binaries().go_version;
    let status = "var/lib/dpkg/status";
    let apk = "lib/apk/db/installed";
    [
        (
            "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
            status,
        ),
        (
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12&upstream=glibc",
            status,
        ),
        (
            "pkg:deb/debian/libssl3@3.0.13-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl",
            status,
        ),
        (
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib",
            status,
        ),
        (
            "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
            "var/lib/dpkg/status.d/tzdata",
        ),
        (
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3",
            apk,
        ),
        (
            "pkg:apk/alpine/libcrypto3@3.3.1-r3?arch=x86_64&distro=alpine-3.20.3&upstream=openssl",
            apk,
        ),
        (
            "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&distro=alpine-3.20.3",
            apk,
        ),
        ("pkg:npm/express@4.19.2", "srv/web/package-lock.json"),
        ("pkg:npm/debug@2.6.9", "srv/web/package-lock.json"),
        (
            "pkg:npm/%40types/node@20.11.30",
            "srv/web/package-lock.json",
        ),
        (
            "pkg:pypi/jinja2@3.1.4",
            "usr/lib/python3/site-packages/Jinja2-3.1.4.dist-info/METADATA",
        ),
        ("pkg:pypi/urllib3@1.26.18", "srv/tools/requirements.txt"),
        ("pkg:cargo/itoa@1.0.15", "srv/app/Cargo.lock"),
        ("pkg:cargo/smallvec@1.16.6", "srv/app/Cargo.lock"),
        ("pkg:cargo/itoa@1.0.15", "usr/local/bin/hello-audit"),
        ("pkg:cargo/smallvec@1.16.6", "usr/local/bin/hello-audit"),
        (
            &format!("pkg:golang/stdlib@{go}") as &str,
            "usr/local/bin/hello-go",
        ),
        (
            "pkg:golang/golang.org/x/text@v0.21.0",
            "usr/local/bin/hello-go",
        ),
    ]
    .into_iter()
    .map(|(p, l)| (p.to_owned(), l.to_owned()))
    .collect()
}

fn listed(json: &str) -> (Value, BTreeSet<(String, String)>) {
    let doc: Value = serde_json::from_str(json).unwrap();
    let set = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["purl"].as_str().unwrap().to_owned(),
                p["location"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (doc, set)
}

fn start_registry(root: &Path) -> (KillOnDrop, String) {
    let host = format!("127.0.0.1:{}", plumb_testenv::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args([
            "registry",
            "serve",
            "--no-auth",
            "--listen",
            &host,
            "--root",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    wait_for_port(&host);
    (child, host)
}

#[test]
fn image_and_directory_list_the_same_packages() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, host) = start_registry(&dir.path().join("registry"));
    let root = dir.path().join("root");
    populate(&root);
    // Layer one: everything. Layer two: a whiteout deleting one pin file.
    let l1 = dir.path().join("l1.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&l1)
        .arg("-C")
        .arg(&root)
        .arg("."));
    let upper = dir.path().join("upper");
    write(&upper, "srv/api/.wh.requirements.txt", b"");
    let l2 = dir.path().join("l2.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&l2)
        .arg("-C")
        .arg(&upper)
        .arg("srv"));
    let image = format!("{host}/scan/sbom:v1");
    let crane = |args: &[&str]| {
        let mut c = Command::new(tool_path("crane"));
        c.args(args)
            .env("HOME", dir.path())
            .env("DOCKER_CONFIG", dir.path().join("docker"));
        c
    };
    let mut append = crane(&["append", "--insecure", "--oci-empty-base", "-t", &image]);
    append.arg("-f").arg(&l1).arg("-f").arg(&l2);
    ok(&mut append);
    let digest = ok(&mut crane(&["digest", "--insecure", &image]));

    let (doc, from_image) = listed(&ok(
        plumb().args(["artifact", "sbom", &image, "--format", "json"])
    ));
    assert_eq!(doc["subject"], image.as_str());
    assert_eq!(doc["digest"], digest.as_str());
    assert_eq!(from_image, expected(), "image");
    assert!(
        !from_image.iter().any(|(p, _)| p.contains("flask")),
        "the whiteout was ignored"
    );

    // The same content as a directory (the deleted file gone).
    std::fs::remove_file(root.join("srv/api/requirements.txt")).unwrap();
    let (doc, from_dir) = listed(&ok(plumb()
        .args(["artifact", "sbom", "--format", "json"])
        .arg(&root)));
    assert_eq!(from_dir, expected(), "directory");
    let libc = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .unwrap();
    assert_eq!(libc["ecosystem"], "Debian");
    assert_eq!(libc["release"], "12");
    assert_eq!(libc["source"], "glibc");

    // CycloneDX and SPDX carry every purl; equal input gives equal bytes.
    let purls: BTreeSet<String> = expected().into_iter().map(|(p, _)| p).collect();
    let cdx_file = dir.path().join("sbom.cdx.json");
    ok(plumb()
        .args(["artifact", "sbom", &image, "--format", "cyclonedx", "-o"])
        .arg(&cdx_file));
    let cdx_text = std::fs::read_to_string(&cdx_file).unwrap();
    let cdx: Value = serde_json::from_str(&cdx_text).unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.6");
    assert_eq!(cdx["metadata"]["component"]["version"], digest.as_str());
    let cdx_purls: BTreeSet<String> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["type"], "library");
            assert_eq!(c["bom-ref"], c["purl"]);
            c["purl"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(cdx_purls, purls);
    let again = ok(plumb().args(["artifact", "sbom", &image, "--format", "cyclonedx"]));
    assert_eq!(again, cdx_text.trim_end());

    let spdx: Value = serde_json::from_str(&ok(
        plumb().args(["artifact", "sbom", &image, "--format", "spdx"])
    ))
    .unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert_eq!(spdx["dataLicense"], "CC0-1.0");
    let spdx_purls: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(spdx_purls, purls);
    assert_eq!(spdx["relationships"][0]["relationshipType"], "DESCRIBES");
}

#[test]
fn bad_input_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write(
        &root,
        "srv/web/package-lock.json",
        b"{\n  \"packages\": {\n    \"node_modules/a\": \n",
    );
    let out_file = dir.path().join("out.json");
    let out = plumb()
        .args(["artifact", "sbom", "-o"])
        .arg(&out_file)
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("srv/web/package-lock.json:4"), "{err}");
    assert!(!out_file.exists());

    let out = plumb()
        .args(["artifact", "sbom", "no-such-dir"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("neither a directory nor an image reference"),
        "{}",
        text(&out)
    );

    // A registry that is not there: the error names the image.
    let port = plumb_testenv::free_port();
    let image = format!("127.0.0.1:{port}/nothing/here:v1");
    let out = plumb().args(["artifact", "sbom", &image]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains(&image), "{}", text(&out));
}
