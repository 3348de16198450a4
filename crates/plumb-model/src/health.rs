//! Health assessment of live objects.
//!
//! Each rule reads only the object's own JSON: its spec, status, conditions
//! and generation counters. A controller that has not yet observed the newest
//! generation makes an object Progressing whatever its status says, because the
//! status describes an older spec. Kinds without a rule, and without generic
//! `Ready`/`Available` conditions, have no health of their own (`None`); they
//! count as Healthy when rolled up.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::HealthStatus;

/// An object's health with the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Why, for anything but plain Healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Health {
    fn new(status: HealthStatus, message: impl Into<String>) -> Health {
        Health {
            status,
            message: message.into(),
        }
    }
    fn healthy() -> Health {
        Health::new(HealthStatus::Healthy, "")
    }
    fn progressing(message: impl Into<String>) -> Health {
        Health::new(HealthStatus::Progressing, message)
    }
    fn degraded(message: impl Into<String>) -> Health {
        Health::new(HealthStatus::Degraded, message)
    }
    /// Health of an object that should exist but does not.
    pub fn missing() -> Health {
        Health::new(
            HealthStatus::Missing,
            "object does not exist in the cluster",
        )
    }
}

/// Assess one live object. `None` means the kind has no notion of health.
pub fn assess(obj: &Value) -> Option<Health> {
    let api_version = str_at(obj, "/apiVersion");
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = str_at(obj, "/kind");
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Some(Health::progressing("pending deletion"));
    }
    match (group, kind) {
        ("apps", "Deployment") => Some(deployment(obj)),
        ("apps", "StatefulSet") => Some(stateful_set(obj)),
        ("apps", "DaemonSet") => Some(daemon_set(obj)),
        ("apps", "ReplicaSet") => Some(replica_set(obj)),
        ("", "Pod") => Some(pod(obj)),
        ("batch", "Job") => Some(job(obj)),
        ("batch", "CronJob") => Some(cron_job(obj)),
        ("", "PersistentVolumeClaim") => Some(pvc(obj)),
        ("", "Service") => Some(service(obj)),
        ("networking.k8s.io", "Ingress") => Some(ingress(obj)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(obj)),
        ("apiregistration.k8s.io", "APIService") => Some(api_service(obj)),
        ("", "Namespace") => Some(namespace(obj)),
        ("argoproj.io", "Application") => Some(application(obj)),
        _ => generic(obj),
    }
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, ptr: &str) -> Option<i64> {
    obj.pointer(ptr).and_then(Value::as_i64)
}

fn bool_at(obj: &Value, ptr: &str) -> bool {
    obj.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

/// The condition of `type` in `status.conditions`.
fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn cond_status(c: &Value) -> &str {
    c.get("status").and_then(Value::as_str).unwrap_or("")
}

fn cond_message(c: &Value) -> String {
    let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = c.get("message").and_then(Value::as_str).unwrap_or("");
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        _ => message.to_string(),
    }
}

/// Whether the controller has seen the newest spec (`status.observedGeneration`).
fn generation_observed(obj: &Value) -> bool {
    match (
        int_at(obj, "/metadata/generation"),
        int_at(obj, "/status/observedGeneration"),
    ) {
        (Some(generation), Some(observed)) => observed >= generation,
        (Some(_), None) => false,
        _ => true,
    }
}

fn deployment(obj: &Value) -> Health {
    if bool_at(obj, "/spec/paused") {
        return Health::new(HealthStatus::Suspended, "deployment is paused");
    }
    if !generation_observed(obj) {
        return Health::progressing(
            "waiting for the deployment controller to observe the new spec",
        );
    }
    if let Some(c) = condition(obj, "Progressing")
        && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        return Health::degraded(format!(
            "rollout exceeded its progress deadline: {}",
            cond_message(c)
        ));
    }
    let want = int_at(obj, "/spec/replicas").unwrap_or(1);
    let updated = int_at(obj, "/status/updatedReplicas").unwrap_or(0);
    let total = int_at(obj, "/status/replicas").unwrap_or(0);
    let available = int_at(obj, "/status/availableReplicas").unwrap_or(0);
    if updated < want {
        return Health::progressing(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Health::progressing(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Health::progressing(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Health::healthy()
}

fn stateful_set(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::progressing(
            "waiting for the statefulset controller to observe the new spec",
        );
    }
    let want = int_at(obj, "/spec/replicas").unwrap_or(1);
    let ready = int_at(obj, "/status/readyReplicas").unwrap_or(0);
    if ready < want {
        return Health::progressing(format!("{ready} of {want} pods ready"));
    }
    if str_at(obj, "/spec/updateStrategy/type") == "OnDelete" {
        return Health::healthy();
    }
    let partition = int_at(obj, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
    if partition > 0 {
        let updated = int_at(obj, "/status/updatedReplicas").unwrap_or(0);
        if updated < want - partition {
            return Health::progressing(format!(
                "partitioned rollout: {updated} of {} pods updated",
                want - partition
            ));
        }
        return Health::healthy();
    }
    let current = str_at(obj, "/status/currentRevision");
    let update = str_at(obj, "/status/updateRevision");
    if current != update {
        return Health::progressing("rolling update in progress");
    }
    Health::healthy()
}

fn daemon_set(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::progressing("waiting for the daemonset controller to observe the new spec");
    }
    if str_at(obj, "/spec/updateStrategy/type") == "OnDelete" {
        return Health::healthy();
    }
    let desired = int_at(obj, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int_at(obj, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int_at(obj, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        return Health::progressing(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Health::progressing(format!("{available} of {desired} pods available"));
    }
    Health::healthy()
}

fn replica_set(obj: &Value) -> Health {
    if !generation_observed(obj) {
        return Health::progressing(
            "waiting for the replicaset controller to observe the new spec",
        );
    }
    if let Some(c) = condition(obj, "ReplicaFailure")
        && cond_status(c) == "True"
    {
        return Health::degraded(cond_message(c));
    }
    let want = int_at(obj, "/spec/replicas").unwrap_or(1);
    let available = int_at(obj, "/status/availableReplicas").unwrap_or(0);
    if available < want {
        return Health::progressing(format!("{available} of {want} replicas available"));
    }
    Health::healthy()
}

/// Container waiting reasons that will not resolve on their own.
const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "ErrImageNeverPull",
];

fn pod(obj: &Value) -> Health {
    let statuses: Vec<&Value> = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| obj.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    for s in &statuses {
        if let Some(reason) = s.pointer("/state/waiting/reason").and_then(Value::as_str)
            && STUCK_REASONS.contains(&reason)
        {
            let name = s.get("name").and_then(Value::as_str).unwrap_or("?");
            let msg = s
                .pointer("/state/waiting/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Health::degraded(
                format!("container {name}: {reason} {msg}")
                    .trim()
                    .to_string(),
            );
        }
    }
    match str_at(obj, "/status/phase") {
        "Succeeded" => Health::healthy(),
        "Failed" => {
            let msg = str_at(obj, "/status/message");
            Health::degraded(if msg.is_empty() { "pod failed" } else { msg })
        }
        "Running" => {
            let containers = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let all_ready = !containers.is_empty()
                && containers
                    .iter()
                    .all(|s| s.get("ready").and_then(Value::as_bool) == Some(true));
            if all_ready {
                Health::healthy()
            } else if let Some(c) = condition(obj, "Ready") {
                Health::progressing(cond_message(c))
            } else {
                Health::progressing("containers are not ready")
            }
        }
        "Pending" => Health::progressing(
            condition(obj, "PodScheduled")
                .filter(|c| cond_status(c) == "False")
                .map(cond_message)
                .unwrap_or_else(|| "pod is pending".into()),
        ),
        _ => Health::new(HealthStatus::Unknown, "pod phase is unknown"),
    }
}

fn job(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "Failed")
        && cond_status(c) == "True"
    {
        return Health::degraded(cond_message(c));
    }
    if let Some(c) = condition(obj, "Complete")
        && cond_status(c) == "True"
    {
        return Health::healthy();
    }
    if bool_at(obj, "/spec/suspend") {
        return Health::new(HealthStatus::Suspended, "job is suspended");
    }
    Health::progressing("job is running")
}

fn cron_job(obj: &Value) -> Health {
    if bool_at(obj, "/spec/suspend") {
        return Health::new(HealthStatus::Suspended, "cronjob is suspended");
    }
    Health::healthy()
}

fn pvc(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        "Bound" => Health::healthy(),
        "Lost" => Health::degraded("claim lost its volume"),
        "Pending" | "" => Health::progressing("waiting for a volume"),
        other => Health::new(HealthStatus::Unknown, format!("phase {other}")),
    }
}

fn has_load_balancer_ingress(obj: &Value) -> bool {
    obj.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn service(obj: &Value) -> Health {
    if str_at(obj, "/spec/type") == "LoadBalancer" && !has_load_balancer_ingress(obj) {
        return Health::progressing("waiting for the load balancer's address");
    }
    Health::healthy()
}

fn ingress(obj: &Value) -> Health {
    if !has_load_balancer_ingress(obj) {
        return Health::progressing("waiting for the ingress controller to assign an address");
    }
    Health::healthy()
}

fn crd(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "NamesAccepted")
        && cond_status(c) == "False"
    {
        return Health::degraded(cond_message(c));
    }
    match condition(obj, "Established") {
        Some(c) if cond_status(c) == "True" => Health::healthy(),
        Some(c) => Health::progressing(cond_message(c)),
        None => Health::progressing("waiting to be established"),
    }
}

fn api_service(obj: &Value) -> Health {
    match condition(obj, "Available") {
        Some(c) if cond_status(c) == "True" => Health::healthy(),
        Some(c) if cond_status(c) == "False" => Health::degraded(cond_message(c)),
        Some(c) => Health::progressing(cond_message(c)),
        None => Health::progressing("waiting for availability"),
    }
}

fn namespace(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        "Terminating" => Health::progressing("namespace is terminating"),
        _ => Health::healthy(),
    }
}

/// A child Application (app of apps): the health its own status reports,
/// Progressing until it has one (what Argo CD's documented health check for
/// Applications does).
fn application(obj: &Value) -> Health {
    let status = str_at(obj, "/status/health/status");
    let message = str_at(obj, "/status/health/message");
    match status {
        "Healthy" => Health::healthy(),
        "Degraded" => Health::degraded(message),
        "Suspended" => Health::new(HealthStatus::Suspended, message),
        "Missing" => Health::new(HealthStatus::Missing, message),
        "" => Health::progressing("waiting for the Application to be reconciled"),
        _ => Health::progressing(message),
    }
}

/// Objects that report `Ready` or `Available` conditions (most custom resources).
fn generic(obj: &Value) -> Option<Health> {
    let c = condition(obj, "Ready").or_else(|| condition(obj, "Available"))?;
    if let Some(observed) = c.get("observedGeneration").and_then(Value::as_i64)
        && int_at(obj, "/metadata/generation").is_some_and(|g| g > observed)
    {
        return Some(Health::progressing(
            "waiting for the controller to observe the new spec",
        ));
    }
    if !generation_observed(obj) && obj.pointer("/status/observedGeneration").is_some() {
        return Some(Health::progressing(
            "waiting for the controller to observe the new spec",
        ));
    }
    Some(match cond_status(c) {
        "True" => Health::healthy(),
        "False" => Health::degraded(cond_message(c)),
        _ => Health::progressing(cond_message(c)),
    })
}
