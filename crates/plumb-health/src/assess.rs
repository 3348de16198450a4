//! An object's health, custom scripts first.
//!
//! [`HealthScripts`] holds the script sets in the order they are asked (the
//! first set with a script for the object's kind wins) and answers
//! [`HealthScripts::assess`] in Argo CD's order: an object being deleted is
//! Progressing; otherwise a script for its group and kind decides, and only
//! when there is none does plumb's built-in check
//! ([`plumb_model::health::assess`]) run.
//!
//! A script runs on a thread of its own, and the caller waits for it at most
//! its time limit plus a second. The Lua hook stops Lua code on time, but a
//! C function (a pathological pattern in `string.find`) cannot be
//! interrupted: such a run is abandoned, the object is Unknown, and the
//! thread finishes on its own. While [`MAX_ABANDONED`] runs are still
//! finishing, further scripts are not started (their objects are Unknown),
//! so a bad script can cost a few threads but never hang a reconcile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plumb_model::Health;
use serde_json::Value;

use crate::sandbox::Limits;
use crate::scripts::{Evaluation, Script, ScriptSet, unknown};

/// Runs past their time limit that may still be finishing before no new
/// script starts.
pub const MAX_ABANDONED: usize = 4;

/// Extra time a run gets beyond its limit before it is abandoned.
const GRACE: Duration = Duration::from_secs(1);

/// The custom health scripts plumb consults, in order. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HealthScripts {
    sets: Vec<Arc<ScriptSet>>,
    limits: Limits,
    abandoned: Arc<AtomicUsize>,
}

/// Where an object's health came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The object is being deleted.
    Deletion,
    /// A custom script (its origin).
    Script(String),
    /// plumb's built-in rules.
    BuiltIn,
}

/// An object's health and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The health; `None` when the object has none (no rule, or a script
    /// that returned none).
    pub health: Option<Health>,
    /// Who decided.
    pub source: Source,
    /// What a script printed.
    pub printed: Vec<String>,
}

impl HealthScripts {
    /// Scripts from `sets`, asked in that order, run within `limits`.
    pub fn new(sets: Vec<ScriptSet>, limits: Limits) -> HealthScripts {
        HealthScripts {
            sets: sets.into_iter().map(Arc::new).collect(),
            limits,
            abandoned: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same scripts with `set` asked first.
    pub fn with_first(&self, set: ScriptSet) -> HealthScripts {
        let mut sets = vec![Arc::new(set)];
        sets.extend(self.sets.iter().cloned());
        HealthScripts {
            sets,
            limits: self.limits,
            abandoned: self.abandoned.clone(),
        }
    }

    /// Whether there is no script at all.
    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(|s| s.is_empty())
    }

    /// The sets, in the order they are asked.
    pub fn sets(&self) -> impl Iterator<Item = &ScriptSet> {
        self.sets.iter().map(|s| s.as_ref())
    }

    /// The limits each run gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The script objects of `group` and `kind` get, if any.
    pub fn find(&self, group: &str, kind: &str) -> Option<&Script> {
        self.sets.iter().find_map(|s| s.find(group, kind))
    }

    /// The object's health: `None` when it has none (it then counts as
    /// Healthy when rolled up).
    pub async fn assess(&self, obj: &Value) -> Option<Health> {
        self.assess_with_source(obj).await.health
    }

    /// [`HealthScripts::assess`], saying who decided and what a script printed.
    pub async fn assess_with_source(&self, obj: &Value) -> Assessment {
        if obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Assessment {
                health: plumb_model::health::assess(obj),
                source: Source::Deletion,
                printed: Vec::new(),
            };
        }
        let (group, kind) = group_kind(obj);
        match self.find(group, kind) {
            Some(script) => {
                let e = self.evaluate(script, obj).await;
                Assessment {
                    health: e.health,
                    source: Source::Script(script.origin.clone()),
                    printed: e.printed,
                }
            }
            None => Assessment {
                health: plumb_model::health::assess(obj),
                source: Source::BuiltIn,
                printed: Vec::new(),
            },
        }
    }

    /// Run `script` on `obj` on a thread of its own, waiting at most its time
    /// limit and a second.
    pub async fn evaluate(&self, script: &Script, obj: &Value) -> Evaluation {
        let unknown_because = |message: String| Evaluation {
            health: Some(unknown(message)),
            printed: Vec::new(),
        };
        if self.abandoned.load(Ordering::SeqCst) >= MAX_ABANDONED {
            return unknown_because(format!(
                "health script not run: {MAX_ABANDONED} earlier runs are still busy past their time limit"
            ));
        }
        let run = Arc::new(Mutex::new(RunState::Running));
        let finished = Finished {
            run: run.clone(),
            abandoned: self.abandoned.clone(),
        };
        let script = script.clone();
        let obj = obj.clone();
        let limits = self.limits;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool: a runtime
        // waits for its blocking tasks when it shuts down, and an abandoned
        // run must not hold up plumb's exit.
        let spawned = std::thread::Builder::new()
            .name("plumb-health-lua".into())
            .spawn(move || {
                let _finished = finished;
                let _ = tx.send(script.evaluate(&obj, &limits));
            });
        if let Err(e) = spawned {
            return unknown_because(format!("cannot start a thread for the health script: {e}"));
        }
        match tokio::time::timeout(limits.wall + GRACE, rx).await {
            Ok(Ok(e)) => e,
            Ok(Err(_)) => unknown_because("health script crashed".into()),
            Err(_) => {
                let mut state = run.lock().unwrap_or_else(|p| p.into_inner());
                if *state == RunState::Running {
                    *state = RunState::Abandoned;
                    self.abandoned.fetch_add(1, Ordering::SeqCst);
                }
                unknown_because(format!(
                    "health script stopped after {:?} (its time limit) inside a library function",
                    limits.wall + GRACE
                ))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Abandoned,
    Done,
}

/// Marks a run done when its thread finishes; an abandoned run then stops
/// counting as abandoned.
struct Finished {
    run: Arc<Mutex<RunState>>,
    abandoned: Arc<AtomicUsize>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut state = self.run.lock().unwrap_or_else(|p| p.into_inner());
        if *state == RunState::Abandoned {
            self.abandoned.fetch_sub(1, Ordering::SeqCst);
        }
        *state = RunState::Done;
    }
}

/// The object's API group and kind.
fn group_kind(obj: &Value) -> (&str, &str) {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    (group, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::HealthStatus;
    use serde_json::json;
    use std::time::Instant;

    fn widget(status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": status})
    }

    fn scripts(code: &str) -> HealthScripts {
        let data = [(
            "resource.customizations.health.example.com_Widget".to_string(),
            code.to_string(),
        )]
        .into_iter()
        .collect();
        HealthScripts::new(
            vec![ScriptSet::from_configmap_data("test-cm", &data).unwrap()],
            Limits {
                instructions: 2_000_000,
                memory: 8 << 20,
                wall: Duration::from_millis(300),
            },
        )
    }

    const PHASE: &str = r#"
        if obj.status.phase == "Failed" then
          return {status = "Degraded", message = "widget failed: " .. obj.status.reason}
        end
        return {status = "Healthy"}
    "#;

    #[tokio::test]
    async fn a_script_decides_and_errors_are_unknown() {
        let s = scripts(PHASE);
        let h = s
            .assess(&widget(json!({"phase": "Failed", "reason": "no disk"})))
            .await
            .unwrap();
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.message, "widget failed: no disk");
        // `reason` is missing: concatenating nil is a runtime error.
        let h = s.assess(&widget(json!({"phase": "Failed"}))).await.unwrap();
        assert_eq!(h.status, HealthStatus::Unknown);
        assert!(
            h.message
                .starts_with("test-cm resource.customizations.health.example.com_Widget:3:"),
            "{}",
            h.message
        );
        let h = scripts("return {status = 'fine'}")
            .assess(&widget(json!({})))
            .await
            .unwrap();
        assert_eq!(h.status, HealthStatus::Unknown);
        assert_eq!(h.message, crate::verdict::INVALID_STATUS);
        let h = scripts("while true do end")
            .assess(&widget(json!({})))
            .await
            .unwrap();
        assert_eq!(h.status, HealthStatus::Unknown);
        assert!(h.message.contains("instructions"), "{}", h.message);
    }

    #[tokio::test]
    async fn scripts_override_built_in_rules_and_deletion_comes_first() {
        let data = [(
            "resource.customizations.health.apps_Deployment".to_string(),
            "return {status = 'Suspended', message = 'scripted'}".to_string(),
        )]
        .into_iter()
        .collect();
        let s = HealthScripts::new(
            vec![ScriptSet::from_configmap_data("cm", &data).unwrap()],
            Limits::default(),
        );
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 1}, "status": {}});
        let a = s.assess_with_source(&deploy).await;
        assert_eq!(a.health.unwrap().message, "scripted");
        assert_eq!(
            a.source,
            Source::Script("cm resource.customizations.health.apps_Deployment".into())
        );
        let mut deleting = deploy.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let a = s.assess_with_source(&deleting).await;
        assert_eq!(a.source, Source::Deletion);
        assert_eq!(a.health.unwrap().status, HealthStatus::Progressing);
        // No script: the built-in rule.
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "generation": 2}, "spec": {}, "status": {"observedGeneration": 1}});
        let a = s.assess_with_source(&sts).await;
        assert_eq!(a.source, Source::BuiltIn);
        assert_eq!(a.health.unwrap().status, HealthStatus::Progressing);
        // A script that returns nothing leaves the object without health.
        let none = scripts("return nil").assess(&widget(json!({}))).await;
        assert_eq!(none, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_stuck_in_a_library_function_is_abandoned() {
        // Backtracking in the C pattern matcher: no Lua instruction runs, so
        // only the caller's deadline stops the wait.
        let s = scripts(
            r#"string.find(string.rep("a", 300), string.rep("a-", 12) .. "b") return {status = "Healthy"}"#,
        );
        let started = Instant::now();
        let h = s.assess(&widget(json!({}))).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(h.status, HealthStatus::Unknown);
        assert!(h.message.contains("time limit"), "{}", h.message);
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        // Other objects still get an answer while the run finishes alone.
        let quick = s.with_first(
            ScriptSet::from_configmap_data(
                "quick",
                &[(
                    "resource.customizations.health.example.com_Widget".to_string(),
                    "return {status = 'Healthy'}".to_string(),
                )]
                .into_iter()
                .collect(),
            )
            .unwrap(),
        );
        assert_eq!(
            quick.assess(&widget(json!({}))).await.unwrap().status,
            HealthStatus::Healthy
        );
        // Once MAX_ABANDONED runs are stuck, no new run starts.
        for _ in 1..MAX_ABANDONED {
            s.assess(&widget(json!({}))).await;
        }
        let started = Instant::now();
        let h = quick.assess(&widget(json!({}))).await.unwrap();
        assert_eq!(h.status, HealthStatus::Unknown);
        assert!(h.message.contains("still busy"), "{}", h.message);
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
