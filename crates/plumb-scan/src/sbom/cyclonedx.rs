//! CycloneDX 1.6 JSON. One component (`type: library`) per distinct purl,
//! its `bom-ref` the purl and the files it was found in listed as evidence
//! occurrences; the subject (image or directory) is `metadata.component`.
//! Equal SBOMs give equal bytes: components are in purl order, the serial
//! number is a UUID derived from the SBOM's content, and the timestamp is
//! the caller's.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Package, Sbom};

/// A UUID (version 8, RFC 9562's custom layout) from a SHA-256 of the SBOM,
/// so the same content always gets the same serial number and namespace.
pub(crate) fn content_uuid(sbom: &Sbom) -> String {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(sbom).unwrap_or_default());
    let h = hash.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Packages grouped by purl, in purl order.
pub(crate) fn by_purl(sbom: &Sbom) -> BTreeMap<&str, Vec<&Package>> {
    let mut groups: BTreeMap<&str, Vec<&Package>> = BTreeMap::new();
    for p in &sbom.packages {
        groups.entry(p.purl.as_str()).or_default().push(p);
    }
    groups
}

/// RFC 3339 in whole seconds, UTC.
pub(crate) fn timestamp(created: jiff::Timestamp) -> String {
    created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `sbom` as a CycloneDX 1.6 document created at `created`.
pub fn to_cyclonedx(sbom: &Sbom, created: jiff::Timestamp) -> Value {
    let components: Vec<Value> = by_purl(sbom)
        .into_iter()
        .map(|(purl, found)| {
            let first = found[0];
            let mut locations: Vec<&str> = found.iter().map(|p| p.location.as_str()).collect();
            locations.dedup();
            let mut c = json!({
                "type": "library",
                "bom-ref": purl,
                "name": first.name,
                "version": first.version,
                "purl": purl,
                "evidence": {
                    "occurrences": locations
                        .iter()
                        .map(|l| json!({ "location": l }))
                        .collect::<Vec<_>>(),
                },
                "properties": [
                    { "name": "plumb:ecosystem", "value": first.ecosystem.osv_name() },
                ],
            });
            if let Some(props) = c["properties"].as_array_mut() {
                if let Some(release) = &first.release {
                    props.push(json!({ "name": "plumb:release", "value": release }));
                }
                if let Some(source) = &first.source {
                    props.push(json!({ "name": "plumb:source-package", "value": source }));
                }
            }
            c
        })
        .collect();
    let mut subject = json!({
        "type": if sbom.digest.is_some() { "container" } else { "application" },
        "bom-ref": "subject",
        "name": sbom.subject,
    });
    if let Some(d) = &sbom.digest {
        subject["version"] = json!(d);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", content_uuid(sbom)),
        "version": 1,
        "metadata": {
            "timestamp": timestamp(created),
            "tools": {
                "components": [
                    { "type": "application", "name": "plumb", "version": env!("CARGO_PKG_VERSION") }
                ]
            },
            "component": subject,
        },
        "components": components,
        "dependencies": [
            {
                "ref": "subject",
                "dependsOn": by_purl(sbom).keys().collect::<Vec<_>>(),
            }
        ],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sbom::Ecosystem;

    pub(crate) fn sample() -> Sbom {
        let pkg = |name: &str, version: &str, purl: &str, location: &str| Package {
            ecosystem: Ecosystem::Npm,
            release: None,
            name: name.into(),
            version: version.into(),
            purl: purl.into(),
            source: None,
            location: location.into(),
        };
        Sbom::new(
            "127.0.0.1:5000/app:1".into(),
            Some("sha256:00".into()),
            vec![
                pkg(
                    "lodash",
                    "4.17.20",
                    "pkg:npm/lodash@4.17.20",
                    "a/package-lock.json",
                ),
                pkg(
                    "lodash",
                    "4.17.20",
                    "pkg:npm/lodash@4.17.20",
                    "b/package-lock.json",
                ),
                pkg(
                    "@types/node",
                    "20.1.0",
                    "pkg:npm/%40types/node@20.1.0",
                    "a/package-lock.json",
                ),
            ],
        )
    }

    #[test]
    fn shape_and_determinism() {
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let doc = to_cyclonedx(&sample(), at);
        let text = serde_json::to_string(&doc).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["bomFormat"], "CycloneDX");
        assert_eq!(back["specVersion"], "1.6");
        let serial = back["serialNumber"].as_str().unwrap();
        assert!(
            serial.starts_with("urn:uuid:") && serial.len() == 45,
            "{serial}"
        );
        assert_eq!(back["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            back["metadata"]["component"]["name"],
            "127.0.0.1:5000/app:1"
        );
        let comps = back["components"].as_array().unwrap();
        assert_eq!(comps.len(), 2);
        for c in comps {
            assert_eq!(c["type"], "library");
            for field in ["bom-ref", "name", "version", "purl"] {
                assert!(c[field].is_string(), "{field} in {c}");
            }
        }
        assert_eq!(comps[1]["purl"], "pkg:npm/lodash@4.17.20");
        assert_eq!(
            comps[1]["evidence"]["occurrences"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            text,
            serde_json::to_string(&to_cyclonedx(&sample(), at)).unwrap()
        );
        let mut other = sample();
        other.packages.pop();
        assert_ne!(content_uuid(&other), content_uuid(&sample()));
    }
}
