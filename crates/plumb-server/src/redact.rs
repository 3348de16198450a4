//! Keeping Secret values out of everything the server answers.
//!
//! A diff of a `Secret` would otherwise carry its `data` and `stringData`
//! verbatim, both in the desired and live objects and in the unified text.
//! The API and the UI show such diffs only after [`diff_object`] has replaced
//! every value with a marker that still tells whether Git and the cluster
//! agree, and recomputed the text from the redacted objects.

use plumb_kube::ObjectDiff;
use serde_json::Value;

/// Shown for a Secret value that Git and the cluster agree on.
pub(crate) const SAME: &str = "(redacted)";
/// Shown for the cluster's side of a Secret value that differs from Git.
pub(crate) const LIVE: &str = "(redacted: value in the cluster)";
/// Shown for Git's side of a Secret value that differs from the cluster.
pub(crate) const GIT: &str = "(redacted: value in Git)";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether objects of this group and kind carry secret values.
pub(crate) fn is_secret(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Secret"
}

/// Redact a Secret's diff in place (other kinds are left alone).
pub(crate) fn diff_object(o: &mut ObjectDiff) {
    if !is_secret(&o.object.group, &o.object.kind) {
        return;
    }
    let (live, desired) = pair(o.live.as_ref(), o.desired.as_ref());
    o.live = live;
    o.desired = desired;
    if !o.diff.is_empty() {
        o.diff = plumb_kube::textdiff::unified(
            o.live.as_ref(),
            o.desired.as_ref(),
            &o.object.to_string(),
        );
    }
}

/// Both sides of a Secret with every value replaced by a marker; a value
/// present on both sides gets [`SAME`] when equal and [`LIVE`]/[`GIT`] when
/// not.
pub(crate) fn pair(
    live: Option<&Value>,
    desired: Option<&Value>,
) -> (Option<Value>, Option<Value>) {
    let mut l = live.cloned();
    let mut d = desired.cloned();
    for field in ["data", "stringData"] {
        let lm = l.as_ref().and_then(|v| v.get(field)).cloned();
        let dm = d.as_ref().and_then(|v| v.get(field)).cloned();
        if let Some(v) = l.as_mut().and_then(|v| v.get_mut(field)) {
            mark(v, dm.as_ref(), LIVE);
        }
        if let Some(v) = d.as_mut().and_then(|v| v.get_mut(field)) {
            mark(v, lm.as_ref(), GIT);
        }
    }
    for side in [l.as_mut(), d.as_mut()].into_iter().flatten() {
        if let Some(a) = side
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && let Some(v) = a.get_mut(LAST_APPLIED)
        {
            *v = Value::String(SAME.into());
        }
    }
    (l, d)
}

fn mark(values: &mut Value, other: Option<&Value>, differs: &str) {
    let Some(map) = values.as_object_mut() else {
        *values = Value::String(SAME.into());
        return;
    };
    for (k, v) in map.iter_mut() {
        let same = other.and_then(|o| o.get(k)) == Some(&*v);
        *v = Value::String(if same { SAME } else { differs }.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_never_survive_but_differences_do() {
        let live = json!({"kind": "Secret", "data": {"a": "c2VjcmV0MQ==", "b": "c2FtZQ=="},
            "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"c2VjcmV0MQ==\"}}"}}});
        let git = json!({"kind": "Secret", "data": {"a": "c2VjcmV0Mg==", "b": "c2FtZQ=="},
            "stringData": {"c": "plain-secret"}});
        let (l, d) = pair(Some(&live), Some(&git));
        let text = format!("{l:?}{d:?}");
        for secret in ["c2VjcmV0MQ==", "c2VjcmV0Mg==", "c2FtZQ==", "plain-secret"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let (l, d) = (l.unwrap(), d.unwrap());
        assert_eq!(l["data"]["a"], LIVE);
        assert_eq!(d["data"]["a"], GIT);
        assert_eq!(l["data"]["b"], SAME);
        assert_eq!(d["data"]["b"], SAME);
        assert_eq!(d["stringData"]["c"], GIT);
        assert_eq!(l["metadata"]["annotations"][LAST_APPLIED], SAME);
    }

    #[test]
    fn only_core_secrets_are_touched() {
        assert!(is_secret("", "Secret"));
        assert!(!is_secret("example.com", "Secret"));
        assert!(!is_secret("", "ConfigMap"));
    }
}
