//! Keys for SOPS files kept in a Kubernetes Secret, as Flux's
//! `decryption.secretRef` does: an Application annotated
//! `plumb.dev/decryption-secret: <namespace>/<name>` has its SOPS files
//! decrypted with every age identity under a data key ending in `.agekey`.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use plumb_render::Keyring;

use crate::PipelineError;

/// The annotation naming the Secret with an Application's age identities.
pub const DECRYPTION_SECRET_ANNOTATION: &str = "plumb.dev/decryption-secret";

/// The age identities of the Secret `reference` names (`namespace/name`, or
/// `name` in `default_namespace`), read through `client`. Errors never quote
/// the Secret's data.
pub async fn secret_keyring(
    client: &kube::Client,
    reference: &str,
    default_namespace: Option<&str>,
) -> Result<Keyring, PipelineError> {
    let fail = |message: String| PipelineError::DecryptionSecret {
        secret: reference.to_string(),
        message,
    };
    let (namespace, name) = match reference.trim().split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => match default_namespace {
            Some(ns) => (ns.to_string(), reference.trim().to_string()),
            None => {
                return Err(fail(
                    "give it as <namespace>/<name> (the Application has no namespace)".into(),
                ));
            }
        },
    };
    if namespace.is_empty() || name.is_empty() {
        return Err(fail("give it as <namespace>/<name>".into()));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = api.get(&name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => fail("no such Secret".into()),
        other => fail(format!("cannot read it: {other}")),
    })?;
    let mut keys = Keyring::new();
    for (key, value) in secret.data.unwrap_or_default() {
        if !key.ends_with(".agekey") {
            continue;
        }
        let text = std::str::from_utf8(&value.0)
            .map_err(|_| fail(format!("data key {key} is not UTF-8 text")))?;
        keys.add_text(text, &format!("{namespace}/{name} {key}"))
            .map_err(|e| fail(e.to_string()))?;
    }
    if keys.is_empty() {
        return Err(fail(
            "no age identity under a data key ending in .agekey".into(),
        ));
    }
    Ok(keys)
}
