//! SPDX 2.3 JSON. The subject (image or directory) is the package the
//! document DESCRIBES; it CONTAINS one package per distinct purl, each with
//! its purl as a PACKAGE-MANAGER external reference. Equal SBOMs give equal
//! bytes: the namespace and SPDX identifiers derive from the content, the
//! creation time is the caller's.

use serde_json::{Value, json};

use super::Sbom;
use super::cyclonedx::{by_purl, content_uuid, timestamp};

/// `sbom` as an SPDX 2.3 document created at `created`.
pub fn to_spdx(sbom: &Sbom, created: jiff::Timestamp) -> Value {
    let mut packages = vec![{
        let mut subject = json!({
            "SPDXID": "SPDXRef-Subject",
            "name": sbom.subject,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": if sbom.digest.is_some() { "CONTAINER" } else { "SOURCE" },
        });
        if let Some(d) = &sbom.digest {
            subject["versionInfo"] = json!(d);
        }
        subject
    }];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Subject",
    })];
    for (i, (purl, found)) in by_purl(sbom).into_iter().enumerate() {
        let first = found[0];
        let id = format!("SPDXRef-Package-{}", i + 1);
        let mut locations: Vec<&str> = found.iter().map(|p| p.location.as_str()).collect();
        locations.dedup();
        packages.push(json!({
            "SPDXID": id,
            "name": first.name,
            "versionInfo": first.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "sourceInfo": format!("found in {}", locations.join(", ")),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Subject",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let uuid = content_uuid(sbom);
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": sbom.subject,
        "documentNamespace": format!("https://plumb.invalid/spdx/{uuid}"),
        "creationInfo": {
            "created": timestamp(created),
            "creators": [format!("Tool: plumb-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": ["SPDXRef-Subject"],
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::cyclonedx::tests::sample;

    #[test]
    fn shape_and_determinism() {
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let text = serde_json::to_string(&to_spdx(&sample(), at)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["dataLicense"], "CC0-1.0");
        assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
        assert!(
            doc["documentNamespace"]
                .as_str()
                .unwrap()
                .starts_with("https://")
        );
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let packages = doc["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 3);
        for p in packages {
            assert_eq!(p["downloadLocation"], "NOASSERTION");
            assert!(p["SPDXID"].as_str().unwrap().starts_with("SPDXRef-"));
            assert!(p["name"].is_string());
        }
        let purls: Vec<_> = packages[1..]
            .iter()
            .map(|p| {
                let r = &p["externalRefs"][0];
                assert_eq!(r["referenceCategory"], "PACKAGE-MANAGER");
                assert_eq!(r["referenceType"], "purl");
                r["referenceLocator"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            purls,
            ["pkg:npm/%40types/node@20.1.0", "pkg:npm/lodash@4.17.20"]
        );
        let rel = doc["relationships"].as_array().unwrap();
        assert_eq!(rel[0]["relationshipType"], "DESCRIBES");
        assert_eq!(rel.len(), 3);
        assert_eq!(
            text,
            serde_json::to_string(&to_spdx(&sample(), at)).unwrap()
        );
    }
}
