//! Retention and garbage collection: what goes, what must never go, and a
//! stress test that pushes while GC runs and then pulls every tagged image.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{OCI_INDEX, TestRegistry, index_of, past_grace, rt};
use plumb_oci::Digest;
use plumb_registry::gc::{GcReport, collect_now};
use reqwest::Method;

fn gc(reg: &TestRegistry, dry_run: bool) -> GcReport {
    collect_now(&reg.registry, dry_run, plumb_registry::service::now()).unwrap()
}

fn pulls_intact(reg: &TestRegistry, repo: &str, tag: &str) {
    pulls_intact_with(&reg.http(), repo, tag);
}

fn pulls_intact_with(h: &common::Http, repo: &str, tag: &str) {
    let r = h.get(&format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = r.bytes().unwrap();
    assert_eq!(Digest::sha256_of(&bytes).to_string(), digest);
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for b in blobs {
        let r = h.get(&format!("/v2/{repo}/blobs/{b}"));
        assert_eq!(r.status(), 200, "{repo}:{tag} blob {b}");
        assert_eq!(Digest::sha256_of(&r.bytes().unwrap()).to_string(), b);
    }
}

#[test]
fn untagged_manifests_and_their_unique_blobs_are_collected() {
    let reg = TestRegistry::start_with("gc:\n  grace: 0s\n");
    let h = reg.http();
    h.push_image("app", "keep", &[b"shared", b"kept only"]);
    let (gone, body) = h.push_image("app", "tmp", &[b"shared", b"garbage only"]);
    // Untag it: delete the tag, the manifest stays but nothing names it.
    assert_eq!(h.delete("/v2/app/manifests/tmp").status(), 202);
    assert_eq!(h.get(&format!("/v2/app/manifests/{gone}")).status(), 200);
    past_grace();

    let dry = gc(&reg, true);
    assert!(dry.dry_run);
    assert_eq!(dry.manifests, vec![format!("app@{gone}")]);
    let garbage = Digest::sha256_of(b"garbage only").to_string();
    assert!(dry.blobs.contains(&garbage), "{dry:?}");
    // A dry run changes nothing.
    assert_eq!(h.get(&format!("/v2/app/manifests/{gone}")).status(), 200);

    let files_before = reg.blob_files().len();
    let report = gc(&reg, false);
    assert_eq!(report.manifests, vec![format!("app@{gone}")]);
    assert!(report.blobs.contains(&garbage));
    assert!(
        !report
            .blobs
            .contains(&Digest::sha256_of(b"shared").to_string())
    );
    assert_eq!(reg.blob_files().len(), files_before - report.blobs.len());
    assert_eq!(h.get(&format!("/v2/app/manifests/{gone}")).status(), 404);
    pulls_intact(&reg, "app", "keep");
    // Nothing more to do.
    let again = gc(&reg, false);
    assert!(
        again.manifests.is_empty() && again.blobs.is_empty(),
        "{again:?}"
    );
    // The collected content can be pushed again.
    assert_eq!(
        h.push_image("app", "tmp", &[b"shared", b"garbage only"]).1,
        body
    );
    pulls_intact(&reg, "app", "tmp");
}

#[test]
fn the_grace_window_protects_fresh_uploads_and_uploads_in_progress() {
    let reg = TestRegistry::start_with("gc:\n  grace: 1h\n");
    let h = reg.http();
    let d = h.push_blob("app", b"uploaded, manifest still coming");
    let loc = h.start_upload("app");
    let r = h
        .req(Method::PATCH, &loc)
        .body(b"half".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let report = gc(&reg, false);
    assert!(report.blobs.is_empty(), "{report:?}");
    assert_eq!(h.get(&format!("/v2/app/blobs/{d}")).status(), 200);
    // The upload continues after GC.
    let full = Digest::sha256_of(b"half and the rest");
    let r = h
        .req(Method::PUT, &format!("{loc}?digest={full}"))
        .body(b" and the rest".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn retention_keeps_the_last_n_matching_and_recent_tags() {
    let reg = TestRegistry::start_with(
        "gc:\n  grace: 0s\nrepositories:\n  - match: \"svc/*\"\n    retention: { keep_last: 2, keep_tags: '^v' }\n",
    );
    let h = reg.http();
    for t in ["v1.0.0", "build-1", "build-2", "build-3", "build-4"] {
        h.push_image("svc/api", t, &[t.as_bytes()]);
        std::thread::sleep(std::time::Duration::from_millis(1050));
    }
    // A repository without a rule keeps everything.
    h.push_image("other/api", "build-1", &[b"o"]);
    let report = gc(&reg, false);
    let mut removed = report.tags.clone();
    removed.sort();
    assert_eq!(removed, vec!["svc/api:build-1", "svc/api:build-2"]);
    assert_eq!(report.manifests.len(), 2, "{report:?}");
    let tags: serde_json::Value = h.get("/v2/svc/api/tags/list").json().unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["build-3", "build-4", "v1.0.0"])
    );
    for t in ["build-3", "build-4", "v1.0.0"] {
        pulls_intact(&reg, "svc/api", t);
    }
    pulls_intact(&reg, "other/api", "build-1");
}

#[test]
fn signatures_of_deleted_subjects_are_collected() {
    let reg = TestRegistry::start_with("gc:\n  grace: 0s\n");
    let h = reg.http();
    let key = plumb_oci::cosign::CosignSigningKey::generate().unwrap();
    let client = reg.client();
    let rt = rt();
    let mut subjects = vec![];
    for tag in ["live", "doomed"] {
        let (d, _) = h.push_image("signed", tag, &[tag.as_bytes()]);
        let r: plumb_oci::Reference = format!("{}/signed@{d}", reg.host()).parse().unwrap();
        rt.block_on(plumb_oci::signing::sign(
            &client,
            &r,
            &key,
            plumb_oci::signing::SignatureFormat::Both,
            None,
        ))
        .unwrap();
        subjects.push(d);
    }
    let doomed = &subjects[1];
    let r = h.delete(&format!("/v2/signed/manifests/{doomed}"));
    assert_eq!(r.status(), 202);
    past_grace();
    let report = gc(&reg, false);
    // The bundle referrer and the .sig manifest of the deleted image go.
    assert_eq!(report.manifests.len(), 2, "{report:?}");
    let tags: serde_json::Value = h.get("/v2/signed/tags/list").json().unwrap();
    let tags: Vec<String> = serde_json::from_value(tags["tags"].clone()).unwrap();
    assert!(!tags.contains(&doomed.cosign_signature_tag()), "{tags:?}");
    assert!(
        tags.contains(&subjects[0].cosign_signature_tag()),
        "{tags:?}"
    );
    let idx: serde_json::Value = h
        .get(&format!("/v2/signed/referrers/{doomed}"))
        .json()
        .unwrap();
    assert_eq!(idx["manifests"], serde_json::json!([]));
    // The live image keeps both signatures, and they still verify.
    let live: plumb_oci::Reference = format!("{}/signed:live", reg.host()).parse().unwrap();
    let rep = rt
        .block_on(plumb_oci::signing::verify(
            &client,
            &live,
            &key.public_key(),
            plumb_oci::signing::SignatureFormat::Both,
        ))
        .unwrap();
    assert_eq!(rep.verified.len(), 2);
}

#[test]
fn an_index_keeps_its_children() {
    let reg = TestRegistry::start_with("gc:\n  grace: 0s\n");
    let h = reg.http();
    let (child, body) = h.push_image("multi", "child-tmp", &[b"amd64 layer"]);
    let idx = index_of(&child, body.len());
    let r = h.put_manifest_as("multi", "v2.0.0", OCI_INDEX, idx.as_bytes());
    assert_eq!(r.status(), 201);
    assert_eq!(h.delete("/v2/multi/manifests/child-tmp").status(), 202);
    past_grace();
    let report = gc(&reg, false);
    assert!(report.manifests.is_empty(), "{report:?}");
    pulls_intact(&reg, "multi", &child.to_string());
}

#[test]
fn pushing_while_gc_runs_loses_no_tagged_image() {
    // The server collects online every second too, next to the explicit loop.
    let reg = Arc::new(TestRegistry::start_with(
        "gc:\n  grace: 4s\n  interval: 1s\n",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let gc_runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let collector = {
        let (reg, stop, runs) = (reg.clone(), stop.clone(), gc_runs.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = collect_now(&reg.registry, false, plumb_registry::service::now()).unwrap();
                removed += r.manifests.len() + r.blobs.len();
                runs.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            removed
        })
    };
    let started = std::time::Instant::now();
    let pushers: Vec<_> = (0..3)
        .map(|w| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                let h = reg.http();
                let mut tagged = vec![];
                let mut i = 0;
                while started.elapsed() < std::time::Duration::from_secs(6) {
                    // Shared base layer, a unique layer, and garbage: an image
                    // pushed and then untagged.
                    let tag = format!("w{w}-{i}");
                    h.push_image(
                        "stress",
                        &tag,
                        &[b"common base", format!("unique {w} {i}").as_bytes()],
                    );
                    tagged.push(tag);
                    let junk = format!("junk-{w}-{i}");
                    h.push_image("stress", &junk, &[b"common base", junk.as_bytes()]);
                    let r = h.delete(&format!("/v2/stress/manifests/{junk}"));
                    assert_eq!(r.status(), 202);
                    i += 1;
                }
                tagged
            })
        })
        .collect();
    let tagged: Vec<String> = pushers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    // Let the junk age past the grace window while GC keeps running.
    std::thread::sleep(std::time::Duration::from_millis(5200));
    stop.store(true, Ordering::Relaxed);
    let removed = collector.join().unwrap();
    assert!(gc_runs.load(Ordering::Relaxed) > 10);
    assert!(
        removed > 0,
        "GC collected nothing: the stress test did not exercise it"
    );
    assert!(tagged.len() > 10, "only {} images pushed", tagged.len());
    let h = reg.http();
    for t in &tagged {
        pulls_intact_with(&h, "stress", t);
    }
    // Every junk tag's unique layer is gone, every tagged one's is there.
    let tags: serde_json::Value = reg.http().get("/v2/stress/tags/list").json().unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), tagged.len());
    eprintln!(
        "stress: {} images pushed, {} GC runs, {removed} objects collected",
        tagged.len(),
        gc_runs.load(Ordering::Relaxed)
    );
}

#[test]
fn gc_runs_on_request_in_a_live_registry_for_push_users_only() {
    let reg = TestRegistry::start_with("gc:\n  grace: 0s\n");
    let h = reg.http();
    h.push_image("live", "keep", &[b"k"]);
    let (gone, _) = h.push_image("live", "tmp", &[b"g"]);
    assert_eq!(h.delete("/v2/live/manifests/tmp").status(), 202);
    past_grace();
    // The read role may not collect.
    let reader = reg
        .http()
        .with_user(common::READER, common::READER_PASSWORD);
    assert_eq!(reader.post("/plumb/v1/gc").status(), 403);
    assert_eq!(reg.http().anonymous().post("/plumb/v1/gc").status(), 401);
    // A dry run lists, and leaves the manifest in place.
    let r = h.post("/plumb/v1/gc?dry_run=true");
    assert_eq!(r.status(), 200);
    let dry: serde_json::Value = r.json().unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["manifests"],
        serde_json::json!([format!("live@{gone}")])
    );
    assert_eq!(h.get(&format!("/v2/live/manifests/{gone}")).status(), 200);
    // Through the client the CLI uses, for real.
    let v = rt()
        .block_on(
            reg.client()
                .post_extension(&reg.host(), "/plumb/v1/gc", &[("dry_run", "false")]),
        )
        .unwrap();
    let report: GcReport = serde_json::from_value(v).unwrap();
    assert!(!report.dry_run);
    assert_eq!(report.manifests, vec![format!("live@{gone}")]);
    assert_eq!(h.get(&format!("/v2/live/manifests/{gone}")).status(), 404);
    pulls_intact(&reg, "live", "keep");
}
