//! Where health scripts come from, and which one an object gets.
//!
//! A [`ScriptSet`] is the scripts of one source, keyed as Argo CD keys them:
//! `GROUP/KIND`, or `KIND` alone for the core group. Three sources fill one:
//!
//! - Argo CD's `argocd-cm` ConfigMap data ([`ScriptSet::from_configmap_data`],
//!   and [`ScriptSet::from_configmap_file`] for its manifest on disk): the
//!   keys `resource.customizations.health.GROUP_KIND` (or `.KIND` for the
//!   core group, `.all` for `*/*`), and the older `resource.customizations`
//!   key, a YAML map of `GROUP/KIND: {health.lua: ...}`. A later split key
//!   replaces the older key's script for the same kind, as in Argo CD. Keys
//!   may be globs (`*.crossplane.io/*`), matched against `GROUP/KIND` with
//!   `*` crossing `/`;
//! - a directory laid out as Argo CD's `resource_customizations`
//!   ([`ScriptSet::from_directory`]): `GROUP/KIND/health.lua`, or
//!   `KIND/health.lua` for the core group; `_` in a directory name is a
//!   wildcard (`_.crossplane.io/_/health.lua`), and here `*` does not cross
//!   `/`;
//! - one script for every kind ([`ScriptSet::for_every_kind`]), which
//!   `plumb health --script` uses.
//!
//! Within a set an exact key wins over a glob, and globs are tried in key
//! order (Argo CD tries them in its map's random order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use plumb_model::{Health, HealthStatus};
use serde_json::Value;

use crate::sandbox::{self, Limits, ScriptError};
use crate::verdict;

/// The largest script file read.
const MAX_SCRIPT_BYTES: u64 = 1 << 20;

/// The largest ConfigMap manifest read.
const MAX_CONFIGMAP_BYTES: u64 = 4 << 20;

/// The prefix of every Argo CD resource customization key.
const CUSTOMIZATIONS: &str = "resource.customizations";

/// Why scripts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is too large to be a script or a ConfigMap.
    #[error("{path} is {size} bytes, more than the {limit} a health script source may be")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A YAML document does not parse.
    #[error("{origin}: {message}")]
    Yaml {
        /// `file:line:col`, or the ConfigMap key.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not a ConfigMap.
    #[error("{path}: expected an argocd-cm ConfigMap manifest (kind: ConfigMap), found {found}")]
    NotConfigMap {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// A `resource.customizations.*` key Argo CD would refuse too.
    #[error("{origin}: key {key:?}: {message}")]
    BadKey {
        /// The ConfigMap.
        origin: String,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// A script does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A directory holds no health scripts at all.
    #[error(
        "{0} holds no GROUP/KIND/health.lua (expected the layout of Argo CD's resource_customizations)"
    )]
    EmptyDirectory(PathBuf),
}

/// One health script.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it came from, as error positions name it (a path, or the
    /// ConfigMap and key).
    pub origin: String,
    /// The key it is found under (`GROUP/KIND`, `KIND`, or a glob).
    pub key: String,
    /// The Lua source.
    pub code: Arc<str>,
}

/// What one run of a script gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The health: `None` when the script returned none (nil, `{}`); a
    /// failed script is Unknown with the error as its message.
    pub health: Option<Health>,
    /// What the script printed.
    pub printed: Vec<String>,
}

impl Script {
    /// Run the script on `obj` in this thread, within `limits`; errors become
    /// Unknown with the error as the message, as in Argo CD.
    pub fn evaluate(&self, obj: &Value, limits: &Limits) -> Evaluation {
        match self.run(obj, limits) {
            Ok((health, printed)) => Evaluation { health, printed },
            Err(message) => Evaluation {
                health: Some(unknown(message)),
                printed: Vec::new(),
            },
        }
    }

    fn run(&self, obj: &Value, limits: &Limits) -> Result<(Option<Health>, Vec<String>), String> {
        let run = sandbox::run(&self.code, &self.origin, obj, limits)
            .map_err(|e: ScriptError| e.to_string())?;
        let health = verdict::interpret(&run.returned)?;
        Ok((health, run.printed))
    }
}

/// Unknown, with `message`.
pub fn unknown(message: impl Into<String>) -> Health {
    Health {
        status: HealthStatus::Unknown,
        message: message.into(),
    }
}

/// The key Argo CD files an object's scripts under: `GROUP/KIND`, or `KIND`
/// for the core group.
pub fn group_kind_key(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    }
}

/// The scripts of one source.
#[derive(Debug, Clone, Default)]
pub struct ScriptSet {
    /// What the set was read from.
    pub origin: String,
    exact: BTreeMap<String, Script>,
    globs: Vec<(GlobMatcher, Script)>,
}

impl ScriptSet {
    /// How many scripts the set holds.
    pub fn len(&self) -> usize {
        self.exact.len() + self.globs.len()
    }

    /// Whether the set holds no script.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every script, exact keys first.
    pub fn scripts(&self) -> impl Iterator<Item = &Script> {
        self.exact.values().chain(self.globs.iter().map(|(_, s)| s))
    }

    /// The script for objects of `group` and `kind`: an exact key first, then
    /// the first glob that matches.
    pub fn find(&self, group: &str, kind: &str) -> Option<&Script> {
        let key = group_kind_key(group, kind);
        self.exact.get(&key).or_else(|| {
            self.globs
                .iter()
                .find(|(m, _)| m.is_match(&key))
                .map(|(_, s)| s)
        })
    }

    /// One script, used for every object whatever its kind.
    pub fn for_every_kind(origin: &str, code: &str) -> Result<ScriptSet, LoadError> {
        sandbox::check_syntax(code, origin).map_err(|e| LoadError::Syntax(e.to_string()))?;
        let mut set = ScriptSet {
            origin: origin.to_string(),
            ..Default::default()
        };
        let script = Script {
            origin: origin.to_string(),
            key: "*".into(),
            code: code.into(),
        };
        let matcher = glob("*", false).map_err(|message| LoadError::BadKey {
            origin: origin.into(),
            key: "*".into(),
            message,
        })?;
        set.globs.push((matcher, script));
        Ok(set)
    }

    /// The health scripts of an `argocd-cm` ConfigMap's `data` (see the
    /// module notes for the keys). `origin` names the ConfigMap in messages.
    /// Scripts are not compiled here: one that does not parse makes its
    /// objects Unknown, as in Argo CD (see [`ScriptSet::check_syntax`]).
    pub fn from_configmap_data(
        origin: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<ScriptSet, LoadError> {
        let mut scripts: BTreeMap<String, Script> = BTreeMap::new();
        if let Some(text) = data.get(CUSTOMIZATIONS).filter(|t| !t.trim().is_empty()) {
            let overrides: BTreeMap<String, Override> =
                parse_yaml(text).map_err(|message| LoadError::Yaml {
                    origin: format!("{origin} key {CUSTOMIZATIONS}"),
                    message,
                })?;
            for (key, o) in overrides {
                let code = o.health_lua.unwrap_or_default();
                scripts.insert(
                    key.clone(),
                    Script {
                        origin: format!("{origin} {CUSTOMIZATIONS} {key}"),
                        key,
                        code: code.into(),
                    },
                );
            }
        }
        for (name, value) in data {
            if !name.starts_with(CUSTOMIZATIONS) {
                continue;
            }
            let parts: Vec<&str> = name.splitn(4, '.').collect();
            let [_, _, kind_of, group_kind] = parts[..] else {
                continue;
            };
            let bad = |message: String| LoadError::BadKey {
                origin: origin.to_string(),
                key: name.clone(),
                message,
            };
            let key = override_key(group_kind).map_err(bad)?;
            match kind_of {
                "health" => {
                    scripts.insert(
                        key.clone(),
                        Script {
                            origin: format!("{origin} {name}"),
                            key,
                            code: value.as_str().into(),
                        },
                    );
                }
                "useOpenLibs" => {
                    // plumb gives every script the same safe libraries.
                    value
                        .trim()
                        .parse::<bool>()
                        .map_err(|_| bad(format!("{value:?} is not true or false")))?;
                }
                "actions" | "ignoreDifferences" | "ignoreResourceUpdates" | "knownTypeFields" => {}
                other => {
                    return Err(bad(format!(
                        "resource customization type {other:?} is not one Argo CD knows"
                    )));
                }
            }
        }
        let mut set = ScriptSet {
            origin: origin.to_string(),
            ..Default::default()
        };
        for (key, script) in scripts {
            if script.code.trim().is_empty() {
                continue;
            }
            if is_glob(&key) {
                let m = glob(&key, false).map_err(|message| LoadError::BadKey {
                    origin: origin.to_string(),
                    key: key.clone(),
                    message,
                })?;
                set.globs.push((m, script));
            } else {
                set.exact.insert(key, script);
            }
        }
        Ok(set)
    }

    /// The health scripts of an `argocd-cm` ConfigMap manifest (one YAML
    /// document, `kind: ConfigMap`). Every script must parse.
    pub fn from_configmap_file(path: &Path) -> Result<ScriptSet, LoadError> {
        let text = read_bounded(path, MAX_CONFIGMAP_BYTES)?;
        let doc: Value = parse_yaml(&text).map_err(|message| LoadError::Yaml {
            origin: path.display().to_string(),
            message,
        })?;
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != "ConfigMap" {
            return Err(LoadError::NotConfigMap {
                path: path.to_path_buf(),
                found: if kind.is_empty() {
                    "no kind".into()
                } else {
                    format!("kind {kind}")
                },
            });
        }
        let data: BTreeMap<String, String> = match doc.get("data") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect::<Result<_, LoadError>>()?,
            Some(_) => {
                return Err(LoadError::Yaml {
                    origin: path.display().to_string(),
                    message: "data is not a map of strings".into(),
                });
            }
        };
        let set = ScriptSet::from_configmap_data(&path.display().to_string(), &data)?;
        set.check_syntax()?;
        Ok(set)
    }

    /// The scripts of a directory laid out as Argo CD's
    /// `resource_customizations`. Every script must parse.
    pub fn from_directory(dir: &Path) -> Result<ScriptSet, LoadError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LoadError::Io { path, source }
        };
        let mut set = ScriptSet {
            origin: dir.display().to_string(),
            ..Default::default()
        };
        let mut found: Vec<(Vec<String>, PathBuf)> = Vec::new();
        for first in std::fs::read_dir(dir).map_err(io(dir))? {
            let first = first.map_err(io(dir))?;
            if !first.file_type().map_err(io(dir))?.is_dir() {
                continue;
            }
            let name1 = first.file_name().to_string_lossy().into_owned();
            let p1 = first.path();
            if p1.join("health.lua").is_file() {
                found.push((vec![name1.clone()], p1.join("health.lua")));
            }
            for second in std::fs::read_dir(&p1).map_err(io(&p1))? {
                let second = second.map_err(io(&p1))?;
                let p2 = second.path();
                if second.file_type().map_err(io(&p1))?.is_dir() && p2.join("health.lua").is_file()
                {
                    let name2 = second.file_name().to_string_lossy().into_owned();
                    found.push((vec![name1.clone(), name2], p2.join("health.lua")));
                }
            }
        }
        if found.is_empty() {
            return Err(LoadError::EmptyDirectory(dir.to_path_buf()));
        }
        found.sort();
        for (parts, file) in found {
            let code = read_bounded(&file, MAX_SCRIPT_BYTES)?;
            let origin = file.display().to_string();
            sandbox::check_syntax(&code, &origin).map_err(|e| LoadError::Syntax(e.to_string()))?;
            let key = parts.join("/");
            let script = Script {
                origin,
                key: key.clone(),
                code: code.into(),
            };
            if key.contains('_') {
                let pattern = key.replace('_', "*");
                let m = glob(&pattern, true).map_err(|message| LoadError::BadKey {
                    origin: set.origin.clone(),
                    key: key.clone(),
                    message,
                })?;
                set.globs.push((m, script));
            } else {
                set.exact.insert(key, script);
            }
        }
        Ok(set)
    }

    /// Refuse the set when any of its scripts does not parse.
    pub fn check_syntax(&self) -> Result<(), LoadError> {
        for s in self.scripts() {
            sandbox::check_syntax(&s.code, &s.origin)
                .map_err(|e| LoadError::Syntax(e.to_string()))?;
        }
        Ok(())
    }
}

/// An entry of the older `resource.customizations` key.
#[derive(Debug, Default, serde::Deserialize)]
struct Override {
    #[serde(rename = "health.lua", default)]
    health_lua: Option<String>,
}

/// `GROUP_KIND` (or `KIND`, or `all`) of a split key as `GROUP/KIND`.
fn override_key(group_kind: &str) -> Result<String, String> {
    let parts: Vec<&str> = group_kind.split('_').collect();
    match parts[..] {
        ["all"] => Ok("*/*".into()),
        [kind] if !kind.is_empty() => Ok(kind.to_string()),
        [group, kind] => Ok(format!("{group}/{kind}")),
        _ => Err(format!(
            "{group_kind:?} is not GROUP_KIND or KIND (as in resource.customizations.health.cert-manager.io_Certificate)"
        )),
    }
}

fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '[', '{'])
}

fn glob(pattern: &str, separator_is_literal: bool) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(separator_is_literal)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

fn read_bounded(path: &Path, limit: u64) -> Result<String, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limit {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Parse one YAML document, bounded against alias bombs; the error names
/// `line:col`.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut options = serde_saphyr::Options::default();
    options.alias_limits.max_total_replayed_events = 200_000;
    options.alias_limits.max_replay_stack_depth = 32;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{}:{}: ", l.line(), l.column()))
            .unwrap_or_default();
        let text = e.to_string();
        format!("{at}{}", text.lines().next().unwrap_or(""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn argocd_cm_keys() {
        let set = ScriptSet::from_configmap_data(
            "argocd/argocd-cm",
            &data(&[
                (
                    "resource.customizations.health.cert-manager.io_Certificate",
                    "return {status='Healthy'}",
                ),
                ("resource.customizations.health.Pod", "return nil"),
                (
                    "resource.customizations.health.*.crossplane.io_*",
                    "return {status='Degraded'}",
                ),
                (
                    "resource.customizations.useOpenLibs.cert-manager.io_Certificate",
                    "true",
                ),
                (
                    "resource.customizations.ignoreDifferences.apps_Deployment",
                    "jsonPointers: [/spec/replicas]",
                ),
                (
                    "resource.customizations",
                    "example.com/Widget:\n  health.lua: |\n    return {status = 'Progressing'}\ncert-manager.io/Certificate:\n  health.lua: old\n",
                ),
                ("application.instanceLabelKey", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(set.len(), 4);
        let cert = set.find("cert-manager.io", "Certificate").unwrap();
        assert!(cert.code.contains("Healthy"), "the split key wins");
        assert!(set.find("", "Pod").is_some());
        assert!(set.find("example.com", "Widget").is_some());
        assert_eq!(
            set.find("ec2.aws.crossplane.io", "Instance").unwrap().key,
            "*.crossplane.io/*"
        );
        assert!(set.find("apps", "Deployment").is_none());
        assert!(set.find("", "Widget").is_none());
    }

    #[test]
    fn all_means_every_grouped_kind() {
        let set = ScriptSet::from_configmap_data(
            "cm",
            &data(&[("resource.customizations.health.all", "return nil")]),
        )
        .unwrap();
        assert!(set.find("apps", "Deployment").is_some());
        // `*/*` needs a group, as in Argo CD.
        assert!(set.find("", "Pod").is_none());
    }

    #[test]
    fn bad_keys_are_refused() {
        let err = ScriptSet::from_configmap_data(
            "cm",
            &data(&[("resource.customizations.health.a_b_c", "return nil")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("a_b_c"), "{err}");
        let err = ScriptSet::from_configmap_data(
            "cm",
            &data(&[("resource.customizations.colour.apps_Deployment", "x")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn directories_in_argo_layout() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("example.com/Widget/health.lua", "return nil");
        write("_.crossplane.io/_/health.lua", "return nil");
        write("Service/health.lua", "return nil");
        write("example.com/Widget/health_test.yaml", "tests: []");
        let set = ScriptSet::from_directory(dir.path()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(
            set.find("example.com", "Widget").unwrap().key,
            "example.com/Widget"
        );
        assert_eq!(
            set.find("ec2.aws.crossplane.io", "Instance").unwrap().key,
            "_.crossplane.io/_"
        );
        assert!(set.find("", "Service").is_some());
        assert!(set.find("example.com", "Gadget").is_none());

        write("broken.io/Thing/health.lua", "if then");
        let err = ScriptSet::from_directory(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("broken.io/Thing/health.lua:1:"),
            "{err}"
        );
    }

    #[test]
    fn configmap_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("argocd-cm.yaml");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  resource.customizations.health.example.com_Widget: |\n    return {status = 'Healthy'}\n",
        )
        .unwrap();
        let set = ScriptSet::from_configmap_file(&p).unwrap();
        assert!(set.find("example.com", "Widget").is_some());

        std::fs::write(&p, "apiVersion: v1\nkind: Secret\n").unwrap();
        assert!(matches!(
            ScriptSet::from_configmap_file(&p),
            Err(LoadError::NotConfigMap { .. })
        ));
        std::fs::write(
            &p,
            "kind: ConfigMap\ndata:\n  resource.customizations.health.x_Y: 'return {'\n",
        )
        .unwrap();
        assert!(matches!(
            ScriptSet::from_configmap_file(&p),
            Err(LoadError::Syntax(_))
        ));
    }
}
