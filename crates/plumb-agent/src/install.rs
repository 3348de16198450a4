//! What `plumb install` puts in a cluster: the `argoproj.io/v1alpha1` CRDs
//! (Application, AppProject, ApplicationSet), a namespace, least-privilege
//! RBAC, and a Deployment running `plumb agent --in-cluster` with probes,
//! requests and a PodDisruptionBudget.
//!
//! The CRD schemas are plumb's: the fields plumb reads are typed (so
//! `kubectl explain` and server-side validation help), and every object
//! keeps unknown fields (`x-kubernetes-preserve-unknown-fields`), so
//! Applications written for Argo CD are stored unchanged. As in Argo CD, the
//! CRDs have no status subresource: `.status` and `.operation` are written
//! with the object. The printer columns are Argo's, so `kubectl get
//! applications` reads the same.

use serde_json::{Value, json};

/// The label plumb puts on what it installs.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "plumb");

/// How to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The namespace for the agent and the Applications it watches.
    pub namespace: String,
    /// The container image of plumb.
    pub image: String,
    /// Agent replicas.
    pub replicas: u32,
    /// When non-empty, the agent may write only in these namespaces (and
    /// reads everything); empty: it may write anywhere, as Argo CD's
    /// application controller.
    pub managed_namespaces: Vec<String>,
}

/// The names of the three CRDs.
pub const CRD_NAMES: [&str; 3] = [
    "applications.argoproj.io",
    "appprojects.argoproj.io",
    "applicationsets.argoproj.io",
];

fn labels() -> Value {
    json!({
        MANAGED_BY.0: MANAGED_BY.1,
        "app.kubernetes.io/part-of": "plumb",
    })
}

/// An object node that keeps fields plumb does not type.
fn open(properties: Value) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": properties,
    })
}

fn string() -> Value {
    json!({"type": "string"})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn source() -> Value {
    open(json!({
        "repoURL": string(),
        "targetRevision": string(),
        "path": string(),
        "chart": string(),
        "ref": string(),
        "name": string(),
        "directory": open(json!({
            "recurse": {"type": "boolean"},
            "include": string(),
            "exclude": string(),
        })),
        "kustomize": open(json!({})),
        "helm": open(json!({
            "releaseName": string(),
            "valueFiles": strings(),
            "values": string(),
            "valuesObject": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        })),
    }))
}

fn destination() -> Value {
    open(json!({
        "server": string(),
        "name": string(),
        "namespace": string(),
    }))
}

fn group_kinds() -> Value {
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["group", "kind"],
            "properties": {"group": string(), "kind": string()},
        },
    })
}

fn crd(kind: &str, plural: &str, short: &[&str], spec: Value, columns: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.argoproj.io"), "labels": labels()},
        "spec": {
            "group": "argoproj.io",
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_ascii_lowercase(),
                "shortNames": short,
            },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "apiVersion": string(),
                        "kind": string(),
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "operation": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                }},
            }],
        },
    })
}

/// The Application CRD.
pub fn application_crd() -> Value {
    let mut spec = open(json!({
        "project": string(),
        "source": source(),
        "sources": {"type": "array", "items": source()},
        "destination": destination(),
        "syncPolicy": open(json!({
            "automated": open(json!({
                "prune": {"type": "boolean"},
                "selfHeal": {"type": "boolean"},
                "allowEmpty": {"type": "boolean"},
            })),
            "syncOptions": strings(),
        })),
        "ignoreDifferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "revisionHistoryLimit": {"type": "integer", "format": "int64"},
    }));
    spec["required"] = json!(["destination"]);
    crd(
        "Application",
        "applications",
        &["app", "apps"],
        spec,
        json!([
            {"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"},
            {"name": "Health Status", "type": "string", "jsonPath": ".status.health.status"},
            {"name": "Revision", "type": "string", "jsonPath": ".status.sync.revision", "priority": 10},
            {"name": "Project", "type": "string", "jsonPath": ".spec.project", "priority": 10},
        ]),
    )
}

/// The AppProject CRD.
pub fn app_project_crd() -> Value {
    let spec = open(json!({
        "description": string(),
        "sourceRepos": strings(),
        "sourceNamespaces": strings(),
        "destinations": {"type": "array", "items": destination()},
        "clusterResourceWhitelist": group_kinds(),
        "clusterResourceBlacklist": group_kinds(),
        "namespaceResourceWhitelist": group_kinds(),
        "namespaceResourceBlacklist": group_kinds(),
    }));
    crd(
        "AppProject",
        "appprojects",
        &["appproj", "appprojs"],
        spec,
        json!([]),
    )
}

/// The ApplicationSet CRD.
pub fn application_set_crd() -> Value {
    let spec = open(json!({
        "goTemplate": {"type": "boolean"},
        "goTemplateOptions": strings(),
        "generators": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "syncPolicy": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "strategy": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }));
    crd(
        "ApplicationSet",
        "applicationsets",
        &["appset", "appsets"],
        spec,
        json!([]),
    )
}

/// Every object `plumb install` applies, in apply order (CRDs first).
pub fn manifests(o: &InstallOptions) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let sa = "plumb-agent";
    let selector = json!({"app.kubernetes.io/name": "plumb-agent"});
    let mut pod_labels = labels();
    pod_labels["app.kubernetes.io/name"] = json!("plumb-agent");
    let argo_rule = json!({
        "apiGroups": ["argoproj.io"],
        "resources": ["applications", "appprojects", "applicationsets"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    });
    let events_rule = json!({
        "apiGroups": ["", "events.k8s.io"],
        "resources": ["events"],
        "verbs": ["create", "patch"],
    });
    let everything =
        |verbs: &[&str]| json!({"apiGroups": ["*"], "resources": ["*"], "verbs": verbs});
    let read = ["get", "list", "watch"];
    let write = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let mut out = vec![
        application_crd(),
        app_project_crd(),
        application_set_crd(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels()}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns, "labels": labels()}}),
    ];
    // Cluster-wide: the Application objects, events, and reading what it
    // manages (diff and health need it everywhere it deploys). Writing is
    // cluster-wide too unless the install names the namespaces it manages.
    let mut cluster_rules = vec![argo_rule, events_rule];
    if o.managed_namespaces.is_empty() {
        cluster_rules.push(everything(&write));
    } else {
        cluster_rules.push(everything(&read));
    }
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "plumb-agent", "labels": labels()},
        "rules": cluster_rules,
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "plumb-agent", "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "plumb-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }));
    if !o.managed_namespaces.is_empty() {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "plumb-agent-manage", "labels": labels()},
            "rules": [everything(&write)],
        }));
        for m in &o.managed_namespaces {
            out.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "plumb-agent-manage", "namespace": m, "labels": labels()},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "plumb-agent-manage"},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            }));
        }
    }
    // In its own namespace: Leases (for replicas) and its ConfigMaps.
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "plumb-agent", "namespace": ns, "labels": labels()},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
        ],
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "plumb-agent", "namespace": ns, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plumb-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }));
    out.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "plumb-agent", "namespace": ns, "labels": labels()},
        "spec": {
            "replicas": o.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": sa,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "agent",
                        "image": o.image,
                        "args": [
                            "--data-dir", "/var/lib/plumb",
                            "agent", "--in-cluster",
                            "--app-namespace", ns,
                            // Inside the pod: the probes and the Service reach it.
                            "--listen", "0.0.0.0:8080",
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 6},
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/var/lib/plumb"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "plumb-agent", "namespace": ns, "labels": labels()},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }));
    out.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "plumb-agent", "namespace": ns, "labels": labels()},
        "spec": {
            "selector": {"matchLabels": selector},
            // One replica may always be moved; with more, the rest stay.
            "maxUnavailable": 1,
        },
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(managed: &[&str]) -> InstallOptions {
        InstallOptions {
            namespace: "argocd".into(),
            image: "plumb:test".into(),
            replicas: 1,
            managed_namespaces: managed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn crds_come_first_and_keep_unknown_fields() {
        let m = manifests(&options(&[]));
        let names: Vec<&str> = m[..3]
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, CRD_NAMES);
        let schema = &m[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            schema["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(
            schema["properties"]["spec"]["properties"]["source"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(
            schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert!(m[0]["spec"]["versions"][0].get("subresources").is_none());
    }

    #[test]
    fn managed_namespaces_narrow_writes_to_role_bindings() {
        let wide = manifests(&options(&[]));
        let role = wide
            .iter()
            .find(|o| o["kind"] == "ClusterRole")
            .cloned()
            .unwrap_or_default();
        assert!(role["rules"].as_array().is_some_and(|r| r.iter().any(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("delete")))
                && r["apiGroups"] == json!(["*"])
        })));
        let narrow = manifests(&options(&["team-a", "team-b"]));
        let role = narrow
            .iter()
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "plumb-agent")
            .cloned()
            .unwrap_or_default();
        let star = role["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["apiGroups"] == json!(["*"])).cloned())
            .unwrap_or_default();
        assert_eq!(star["verbs"], json!(["get", "list", "watch"]));
        let bindings: Vec<&str> = narrow
            .iter()
            .filter(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "plumb-agent-manage")
            .map(|o| o["metadata"]["namespace"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(bindings, ["team-a", "team-b"]);
    }
}
