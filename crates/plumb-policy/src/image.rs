//! Container images: where objects name them, and what a name means.
//!
//! Kubernetes takes Docker's short names (`nginx`, `team/app:v1`), so a
//! name is normalised the way the kubelet's runtime does before anything is
//! asked of a registry: no host means `docker.io`, a single path component
//! on Docker Hub means `library/…`. Whether a tag was written matters to
//! the gate (an untagged image is `latest` in disguise), so it is kept.

use plumb_oci::{Digest, Reference, RepositoryName};
use serde_json::Value;

use crate::file::ImagePath;

/// An image name as written, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// As written in the object.
    pub written: String,
    /// `host[:port]` (`docker.io` when none was written).
    pub registry: String,
    /// The repository path.
    pub repository: String,
    /// The tag, when one was written.
    pub tag: Option<String>,
    /// The digest, when one was written.
    pub digest: Option<Digest>,
}

/// Why an image name is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {image:?}: {message}")]
pub struct ImageError {
    /// The name as written.
    pub image: String,
    /// What is wrong.
    pub message: String,
}

impl ImageName {
    /// Read an image name (`[host[:port]/]path[:tag][@digest]`).
    pub fn parse(written: &str) -> Result<ImageName, ImageError> {
        let fail = |message: &str| ImageError {
            image: written.to_string(),
            message: message.to_string(),
        };
        let text = written.trim();
        if text.is_empty() {
            return Err(fail("the name is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| fail(&format!("digest: {e}")))?,
                ),
            ),
            None => (text, None),
        };
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_string(), p.to_string())
            }
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p.to_string(), Some(t.to_string())),
            _ => (path, None),
        };
        let repository = if host == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        RepositoryName::parse(&repository).map_err(|e| fail(&e.to_string()))?;
        if let Some(t) = &tag {
            plumb_oci::Tag::parse(t).map_err(|e| fail(&e.to_string()))?;
        }
        Ok(ImageName {
            written: text.to_string(),
            registry: host,
            repository,
            tag,
            digest,
        })
    }

    /// `host/repository`, what image globs match.
    pub fn repository_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host the registry API answers on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The reference to ask the registry about: the digest when one was
    /// written, else the tag (`latest` when none).
    pub fn reference(&self) -> Result<Reference, ImageError> {
        let text = match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}/{}@{d}", self.api_host(), self.repository),
            (None, Some(t)) => format!("{}/{}:{t}", self.api_host(), self.repository),
            (None, None) => format!("{}/{}:latest", self.api_host(), self.repository),
        };
        text.parse()
            .map_err(|e: plumb_oci::reference::ReferenceError| ImageError {
                image: self.written.clone(),
                message: e.to_string(),
            })
    }

    /// The name as written with `digest` pinned (`name:tag@sha256:…`), so the
    /// tag still shows and what runs cannot move under a re-tag.
    pub fn pinned(&self, digest: &Digest) -> String {
        let base = match self.written.split_once('@') {
            Some((b, _)) => b,
            None => &self.written,
        };
        format!("{base}@{digest}")
    }
}

/// One image an object names: where (a JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// JSON pointer to the image string.
    pub pointer: String,
    /// The image as written.
    pub image: String,
}

/// Where a kind keeps its pod spec, for the kinds Kubernetes ships.
fn pod_spec_pointer(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn group_of(object: &Value) -> &str {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    }
}

/// Every image `object` names: each container, init container and ephemeral
/// container of a Pod or a workload's pod template, and whatever `extra`
/// points at for its kind.
pub fn find_images(object: &Value, extra: &[ImagePath]) -> Vec<ImageUse> {
    let group = group_of(object);
    let kind = object["kind"].as_str().unwrap_or("");
    let mut out = Vec::new();
    if let Some(spec) = pod_spec_pointer(group, kind) {
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            expand(object, &format!("{spec}/{list}/*/image"), &mut out);
        }
    }
    for path in extra.iter().filter(|p| p.group == group && p.kind == kind) {
        for pointer in &path.paths {
            expand(object, pointer, &mut out);
        }
    }
    out
}

/// Resolve a pointer whose `*` segments stand for every index or key.
fn expand(object: &Value, pattern: &str, out: &mut Vec<ImageUse>) {
    fn walk(v: &Value, segments: &[&str], at: String, out: &mut Vec<ImageUse>) {
        let Some((first, rest)) = segments.split_first() else {
            if let Some(image) = v.as_str() {
                out.push(ImageUse {
                    pointer: at,
                    image: image.to_string(),
                });
            }
            return;
        };
        match (*first, v) {
            ("*", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, rest, format!("{at}/{i}"), out);
                }
            }
            ("*", Value::Object(map)) => {
                for (k, item) in map {
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    walk(item, rest, format!("{at}/{escaped}"), out);
                }
            }
            (segment, _) => {
                let key = segment.replace("~1", "/").replace("~0", "~");
                let next = match v {
                    Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                    Value::Object(map) => map.get(&key),
                    _ => None,
                };
                if let Some(next) = next {
                    walk(next, rest, format!("{at}/{segment}"), out);
                }
            }
        }
    }
    let segments: Vec<&str> = pattern.split('/').skip(1).collect();
    walk(object, &segments, String::new(), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_names_normalise_like_the_runtime() {
        let n = ImageName::parse("nginx").unwrap();
        assert_eq!(n.repository_ref(), "docker.io/library/nginx");
        assert_eq!(n.tag, None);
        let n = ImageName::parse("localhost:5000/team/app:v1.2.3").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.repository.as_str()),
            ("localhost:5000", "team/app")
        );
        assert_eq!(n.tag.as_deref(), Some("v1.2.3"));
        let d = format!("sha256:{}", "a".repeat(64));
        let n = ImageName::parse(&format!("reg.example.com/app:v1@{d}")).unwrap();
        assert_eq!(n.digest.as_ref().map(|x| x.to_string()), Some(d.clone()));
        assert_eq!(
            n.pinned(&d.parse().unwrap()),
            format!("reg.example.com/app:v1@{d}")
        );
        assert!(ImageName::parse("Bad/Name").is_err());
    }

    #[test]
    fn images_are_found_in_pod_templates_and_custom_paths() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"image": "init:v1"}],
            "containers": [{"image": "a:v1"}, {"image": "b:v2"}]}}}});
        let found: Vec<String> = find_images(&deploy, &[])
            .into_iter()
            .map(|u| format!("{} {}", u.pointer, u.image))
            .collect();
        assert_eq!(
            found,
            [
                "/spec/template/spec/containers/0/image a:v1",
                "/spec/template/spec/containers/1/image b:v2",
                "/spec/template/spec/initContainers/0/image init:v1",
            ]
        );
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "c:v3"}]}}}}}});
        assert_eq!(find_images(&cron, &[]).len(), 1);
        let rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "spec": {"template": {"spec": {"containers": [{"image": "r:v1"}]}}}});
        assert!(find_images(&rollout, &[]).is_empty());
        let extra = [ImagePath {
            group: "argoproj.io".into(),
            kind: "Rollout".into(),
            paths: vec!["/spec/template/spec/containers/*/image".into()],
        }];
        assert_eq!(find_images(&rollout, &extra)[0].image, "r:v1");
        assert!(find_images(&json!({"apiVersion": "v1", "kind": "ConfigMap"}), &[]).is_empty());
    }
}
