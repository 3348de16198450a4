//! Argo CD's own health scripts, run by plumb on Argo CD's own test cases.
//!
//! `testenv/setup.d/70-argocd` copies Argo CD's `resource_customizations`
//! directory out of its Go module. Every `GROUP/KIND/health.lua` there comes
//! with a `health_test.yaml` listing test objects (`inputPath`) and the
//! health Argo CD gives each (`healthStatus.status` and `.message`). This
//! test loads the whole directory as plumb's `--health-scripts` would, finds
//! each object's script by its group and kind (wildcard directories too),
//! runs it in plumb's sandbox and compares the verdict, exactly as Argo CD's
//! own `TestLuaHealthScript` does. Each disagreement is printed with its
//! case; the count that must agree is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plumb_health::{HealthScripts, Limits, ScriptSet};
use serde_json::Value;

/// One case of a `health_test.yaml`. Argo CD reads the file with Go's
/// `encoding/json` (through sigs.k8s.io/yaml), whose field names match
/// case-insensitively, and some files rely on it (`inputpath:`).
struct Case {
    input_path: String,
    status: String,
    message: String,
}

fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn cases(file: &Path) -> Vec<Case> {
    let doc = yaml(file);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    get(&doc, "tests")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}: no tests", file.display()))
        .iter()
        .map(|t| {
            let health = get(t, "healthStatus");
            Case {
                input_path: text(get(t, "inputPath")),
                status: text(health.and_then(|h| get(h, "status"))),
                message: text(health.and_then(|h| get(h, "message"))),
            }
        })
        .collect()
}

/// The first document of a YAML file, as sigs.k8s.io/yaml reads it: some
/// test objects end with a stray `---`, and one repeats a key (the last
/// one counts).
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    let docs: Vec<Value> = serde_saphyr::from_str_multiple_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter()
        .find(|d| !d.is_null())
        .unwrap_or_else(|| panic!("{}: empty", path.display()))
}

/// Every directory holding a `health_test.yaml`, in order.
fn test_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "health_test.yaml") {
                out.push(dir.clone());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_health_scripts_agree_on_argo_cd_test_cases() {
    let (root, version) = plumb_testenv::argocd_customizations_dir();
    let set = ScriptSet::from_directory(&root).expect("every Argo CD script loads");
    let scripts = HealthScripts::new(vec![set], Limits::default());

    let mut total = 0;
    let mut agree = 0;
    let mut disagreements: BTreeMap<String, String> = BTreeMap::new();
    let dirs = test_dirs(&root);
    for dir in &dirs {
        for case in cases(&dir.join("health_test.yaml")) {
            total += 1;
            let name = format!(
                "{}/{}",
                dir.strip_prefix(&root).unwrap().display(),
                case.input_path
            );
            let obj = yaml(&dir.join(&case.input_path));
            let group = obj["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map(|(g, _)| g)
                .unwrap_or("");
            let kind = obj["kind"].as_str().unwrap_or("");
            let Some(script) = scripts.find(group, kind) else {
                disagreements.insert(name, format!("no script found for {group}/{kind}"));
                continue;
            };
            let got = scripts.evaluate(script, &obj).await.health;
            let (status, message) = got
                .map(|h| (h.status.to_string(), h.message))
                .unwrap_or_default();
            if status == case.status && message == case.message {
                agree += 1;
            } else {
                disagreements.insert(
                    name,
                    format!(
                        "Argo CD: {} {:?}; plumb: {status} {message:?}",
                        case.status, case.message
                    ),
                );
            }
        }
    }
    for (case, why) in &disagreements {
        eprintln!("disagree: {case}: {why}");
    }
    eprintln!(
        "Argo CD {version}: {} scripts with tests, {total} cases, {agree} agree, {} disagree",
        dirs.len(),
        disagreements.len()
    );
    assert_eq!(total, 1142, "the pinned Argo CD has 1142 cases");
    assert_eq!(agree, total, "every case agrees (see the lines above)");
}
