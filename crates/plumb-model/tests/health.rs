//! Health of objects as a real API server stored them.
//!
//! Pods never run in the test environment (there is no kubelet), so the
//! fixtures under `tests/health/` were read back from a real kube-apiserver
//! after their status was written through the status subresource, exactly as a
//! kubelet or controller would write it. Each file's expected health is below.

#![allow(clippy::unwrap_used)]

use plumb_model::HealthStatus::{self, *};
use plumb_model::health::assess;

const EXPECTED: &[(&str, HealthStatus)] = &[
    ("apiservice-local", Healthy),
    ("cronjob-nightly", Suspended),
    ("crd-established", Healthy),
    ("deployment-available", Healthy),
    ("deployment-deadline-exceeded", Degraded),
    ("deployment-paused", Suspended),
    ("daemonset-no-nodes", Healthy),
    ("daemonset-rolling", Progressing),
    ("deployment-web", Progressing),
    ("ingress-pending", Progressing),
    ("ingress-ready", Healthy),
    ("job-complete", Healthy),
    ("job-failed", Degraded),
    ("job-once", Progressing),
    ("namespace-active", Healthy),
    ("pod-crashloop", Degraded),
    ("pod-pending", Progressing),
    ("pod-running-ready", Healthy),
    ("pvc-bound", Healthy),
    ("pvc-data", Progressing),
    ("replicaset-unavailable", Progressing),
    ("service-cip", Healthy),
    ("service-lb", Progressing),
    ("service-lb-ready", Healthy),
    ("statefulset-db", Progressing),
];

fn fixture(name: &str) -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/health/{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn stored_objects_have_the_expected_health() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/health");
    let files = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(files, EXPECTED.len(), "every fixture has an expectation");
    for (name, want) in EXPECTED {
        let got = assess(&fixture(name)).unwrap_or_else(|| panic!("{name}: no health"));
        assert_eq!(got.status, *want, "{name}: {}", got.message);
        if *want != Healthy {
            assert!(
                !got.message.is_empty(),
                "{name}: a non-healthy status says why"
            );
        }
    }
}

#[test]
fn messages_say_why() {
    let crash = assess(&fixture("pod-crashloop")).unwrap();
    assert!(
        crash.message.contains("CrashLoopBackOff"),
        "{}",
        crash.message
    );
    let deadline = assess(&fixture("deployment-deadline-exceeded")).unwrap();
    assert!(
        deadline.message.contains("progress deadline"),
        "{}",
        deadline.message
    );
}

#[test]
fn a_newer_generation_than_observed_is_progressing() {
    let mut d = fixture("deployment-available");
    let g = d["metadata"]["generation"].as_i64().unwrap();
    d["metadata"]["generation"] = (g + 1).into();
    assert_eq!(assess(&d).unwrap().status, Progressing);
}

#[test]
fn objects_being_deleted_are_progressing() {
    let mut d = fixture("pvc-bound");
    d["metadata"]["deletionTimestamp"] = "2026-11-26T06:00:00Z".into();
    assert_eq!(assess(&d).unwrap().status, Progressing);
}

#[test]
fn custom_resources_use_ready_conditions() {
    let cr = |status: &str| {
        serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "db", "generation": 2},
            "status": {"observedGeneration": 2, "conditions": [
                {"type": "Ready", "status": status, "reason": "Provisioning", "message": "waiting for volume"}
            ]}
        })
    };
    assert_eq!(assess(&cr("True")).unwrap().status, Healthy);
    assert_eq!(assess(&cr("False")).unwrap().status, Degraded);
    assert_eq!(assess(&cr("Unknown")).unwrap().status, Progressing);
    let mut stale = cr("True");
    stale["status"]["observedGeneration"] = 1.into();
    assert_eq!(assess(&stale).unwrap().status, Progressing);
    let plain =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert!(assess(&plain).is_none(), "kinds without health have none");
}
