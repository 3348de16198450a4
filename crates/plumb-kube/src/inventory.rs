//! The inventory, kept in the destination cluster.
//!
//! One ConfigMap per Application in the `plumb-system` namespace holds the
//! member list (gzipped JSON), so that a new agent with no local data, or one
//! pointed at the same cluster from elsewhere, knows exactly what it owns.

use std::io::{Read, Write};

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use plumb_model::Inventory;
use plumb_model::inventory::FIELD_MANAGER;

/// Namespace holding inventories.
pub const INVENTORY_NAMESPACE: &str = "plumb-system";
const KEY: &str = "inventory.json.gz";

/// Errors reading or writing an inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The API call failed.
    #[error("inventory {name}: {source}")]
    Api {
        /// The ConfigMap.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The stored inventory is unreadable.
    #[error("inventory {name} is corrupt: {message}")]
    Corrupt {
        /// The ConfigMap.
        name: String,
        /// Why.
        message: String,
    },
}

/// The ConfigMap name for an Application key (`namespace/name`).
pub fn configmap_name(app_key: &str) -> String {
    let cleaned: String = app_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '.'
            }
        })
        .collect();
    let name = format!("inventory.{cleaned}");
    name.chars().take(253).collect()
}

/// Read the inventory of `app_key`; `None` when there is none yet.
pub async fn load(
    client: &kube::Client,
    app_key: &str,
) -> Result<Option<Inventory>, InventoryError> {
    let name = configmap_name(app_key);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), INVENTORY_NAMESPACE);
    let cm = api
        .get_opt(&name)
        .await
        .map_err(|source| InventoryError::Api {
            name: name.clone(),
            source,
        })?;
    let Some(cm) = cm else {
        return Ok(None);
    };
    let corrupt = |message: String| InventoryError::Corrupt {
        name: name.clone(),
        message,
    };
    let Some(bytes) = cm.binary_data.as_ref().and_then(|b| b.get(KEY)) else {
        return Err(corrupt(format!("no {KEY}")));
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes.0.as_slice())
        .take(64 * 1024 * 1024)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(e.to_string()))?;
    let inv: Inventory = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(inv))
}

/// Write the inventory (creating the namespace on first use).
pub async fn save(client: &kube::Client, inv: &Inventory) -> Result<(), InventoryError> {
    let name = configmap_name(&inv.application);
    let api_err = |source| InventoryError::Api {
        name: name.clone(),
        source,
    };
    let json = serde_json::to_vec(inv).map_err(|e| InventoryError::Corrupt {
        name: name.clone(),
        message: e.to_string(),
    })?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(&json);
    let packed = gz.finish().unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(packed);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": INVENTORY_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "plumb"},
            "annotations": {"plumb.dev/application": inv.application},
        },
        "binaryData": { KEY: encoded },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), INVENTORY_NAMESPACE);
    match api.patch(&name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            ensure_namespace(client).await.map_err(api_err)?;
            api.patch(&name, &params, &Patch::Apply(&body))
                .await
                .map_err(api_err)?;
            Ok(())
        }
        Err(e) => Err(api_err(e)),
    }
}

/// Remove an Application's inventory (after everything it owned is gone).
pub async fn delete(client: &kube::Client, app_key: &str) -> Result<(), InventoryError> {
    let name = configmap_name(app_key);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), INVENTORY_NAMESPACE);
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(InventoryError::Api { name, source }),
    }
}

async fn ensure_namespace(client: &kube::Client) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": INVENTORY_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "plumb"}},
    });
    api.patch(
        INVENTORY_NAMESPACE,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_configmap_names() {
        assert_eq!(configmap_name("argocd/myapp"), "inventory.argocd.myapp");
        assert_eq!(configmap_name("My_App"), "inventory.my.app");
        assert!(configmap_name(&"x".repeat(400)).len() <= 253);
    }
}
