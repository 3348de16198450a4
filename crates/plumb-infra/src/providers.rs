//! Finding provider binaries: a local mirror in Terraform's layout
//! (`HOSTNAME/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE*`),
//! version constraints, and `.terraform.lock.hcl` with `h1:` hashes.
//!
//! `init` picks the newest version in the mirror that meets the constraints
//! and records its hash; every later run finds the locked version again and
//! refuses it if its files no longer hash to what the lock file says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use hcl_edit::expr::Expression;
use plumb_tfplugin::{LaunchOptions, Provider};
use sha2::Digest;

use crate::config::{ModuleConfig, in_stack, normalize_source};
use crate::diag::Diag;
use crate::environment::Environment;

/// The lock file's name.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";
const DIRS_FILE: &str = ".terraform/plumb-plugin-dirs.json";

/// One locked provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedProvider {
    /// Exact version.
    pub version: String,
    /// Constraints it was chosen under.
    pub constraints: Option<String>,
    /// `h1:` hashes.
    pub hashes: Vec<String>,
}

/// Where each provider of a stack comes from, and how it is started.
#[derive(Debug, Default)]
pub struct ProviderCatalog {
    binaries: BTreeMap<String, PathBuf>,
    locks: BTreeMap<String, LockedProvider>,
    launch: LaunchOptions,
}

fn platform() -> String {
    let os = std::env::consts::OS;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}_{arch}")
}

/// Go's dirhash "h1:" over a provider package directory.
pub fn hash_package(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut summary = String::new();
    for (name, path) in files {
        let bytes = std::fs::read(&path)?;
        let h = sha2::Sha256::digest(&bytes);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        summary.push_str(&format!("{hex}  {name}\n"));
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(summary.as_bytes()))
    ))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

/// A parsed version: numeric parts and an optional pre-release.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version(Vec<u64>, Option<String>);

fn parse_version(s: &str) -> Option<Version> {
    let s = s.trim().trim_start_matches('v');
    let (main, pre) = match s.split_once('-') {
        Some((m, p)) => (m, Some(p.to_string())),
        None => (s, None),
    };
    let mut parts: Vec<u64> = main
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    while parts.len() < 3 {
        parts.push(0);
    }
    Some(Version(parts, pre))
}

/// Whether `version` meets a constraint string like `">= 1.0, ~> 3.2"`.
pub fn meets(version: &str, constraints: &str) -> bool {
    let Some(v) = parse_version(version) else {
        return false;
    };
    constraints
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .all(|c| {
            let c = c.trim();
            let (op, rest) = ["~>", ">=", "<=", "!=", ">", "<", "="]
                .iter()
                .find_map(|op| c.strip_prefix(op).map(|r| (*op, r.trim())))
                .unwrap_or(("=", c));
            let Some(want) = parse_version(rest) else {
                return false;
            };
            // Pre-release versions match only constraints that name them or have none.
            let vv = Version(v.0.clone(), None);
            let ww = Version(want.0.clone(), None);
            match op {
                "=" => v == want,
                "!=" => v != want,
                ">" => vv > ww,
                ">=" => vv >= ww,
                "<" => vv < ww,
                "<=" => vv <= ww,
                _ => {
                    let segs = rest.split('.').count().max(2);
                    let mut upper = want.0.clone();
                    let bump = segs - 2;
                    upper[bump] += 1;
                    for x in upper.iter_mut().skip(bump + 1) {
                        *x = 0;
                    }
                    vv >= ww && Version(v.0.clone(), None) < Version(upper, None)
                }
            }
        })
}

fn find_package(
    dirs: &[PathBuf],
    source: &str,
    version: Option<&str>,
    constraints: Option<&str>,
) -> Option<(String, PathBuf)> {
    let mut best: Option<(Version, String, PathBuf)> = None;
    for d in dirs {
        let base = d.join(source);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let ver = e.file_name().to_string_lossy().into_owned();
            if version.is_some_and(|v| v != ver) {
                continue;
            }
            if constraints.is_some_and(|c| !meets(&ver, c)) {
                continue;
            }
            let pkg = e.path().join(platform());
            if !pkg.is_dir() {
                continue;
            }
            let Some(pv) = parse_version(&ver) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _, _)| pv > *b) {
                best = Some((pv, ver, pkg));
            }
        }
    }
    best.map(|(_, v, p)| (v, p))
}

fn binary_in(pkg: &Path, ty: &str) -> Option<PathBuf> {
    std::fs::read_dir(pkg)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .starts_with(&format!("terraform-provider-{ty}"))
                })
                .unwrap_or(false)
        })
}

/// Every provider source the configuration needs (with version constraints).
pub fn required_sources(root: &ModuleConfig) -> BTreeMap<String, Option<String>> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    fn walk(m: &ModuleConfig, root: &ModuleConfig, out: &mut BTreeMap<String, Option<String>>) {
        for req in m.required_providers.values() {
            let e = out.entry(req.source.clone()).or_default();
            if let Some(v) = &req.version {
                *e = Some(match e.take() {
                    Some(prev) => format!("{prev}, {v}"),
                    None => v.clone(),
                });
            }
        }
        for r in &m.resources {
            let local = r.provider_name();
            let src = m
                .required_providers
                .get(&local)
                .or_else(|| root.required_providers.get(&local))
                .map(|p| p.source.clone())
                .unwrap_or_else(|| normalize_source(&local));
            out.entry(src).or_default();
        }
        for p in &m.providers {
            let src = m
                .required_providers
                .get(&p.name)
                .map(|x| x.source.clone())
                .unwrap_or_else(|| normalize_source(&p.name));
            out.entry(src).or_default();
        }
        for c in m.modules.values() {
            walk(&c.config, root, out);
        }
    }
    walk(root, root, &mut out);
    out
}

/// Plugin directories when `-plugin-dir` names none: the environment's
/// [`Environment::plugin_dir`], else the `filesystem_mirror` paths of its
/// CLI configuration file (read relative to the stack in `dir`).
pub fn default_plugin_dirs(dir: &Path, env: &Environment) -> Vec<PathBuf> {
    if let Some(d) = &env.plugin_dir {
        return std::env::split_paths(d).collect();
    }
    let mut out = Vec::new();
    let text = env
        .cli_config_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(in_stack(dir, p)).ok());
    if let Some(text) = text
        && let Ok(body) = hcl_edit::parser::parse_body(&text)
    {
        for pi in body
            .blocks()
            .filter(|b| b.ident.value().as_str() == "provider_installation")
        {
            for fm in pi
                .body
                .blocks()
                .filter(|b| b.ident.value().as_str() == "filesystem_mirror")
            {
                if let Some(p) = fm.body.get_attribute("path").and_then(|a| a.value.as_str()) {
                    out.push(PathBuf::from(p));
                }
            }
        }
    }
    out
}

impl ProviderCatalog {
    /// `init`: resolves every required provider from the plugin directories
    /// (relative ones are the stack's), writes the lock file and remembers
    /// the directories.
    pub fn init(
        stack: &Path,
        root: &ModuleConfig,
        plugin_dirs: &[PathBuf],
    ) -> Result<Vec<(String, LockedProvider)>, Diag> {
        let searched: Vec<PathBuf> = plugin_dirs.iter().map(|d| in_stack(stack, d)).collect();
        if plugin_dirs.is_empty() {
            return Err(Diag::new("no provider mirror is configured")
                .hint("pass -plugin-dir=DIR (a directory in Terraform's HOSTNAME/NAMESPACE/TYPE/VERSION/OS_ARCH layout) or set a filesystem_mirror in the CLI configuration"));
        }
        let previous = read_lock_file(&stack.join(LOCK_FILE)).unwrap_or_default();
        let mut out = Vec::new();
        for (source, constraints) in required_sources(root) {
            let locked_version = previous.get(&source).map(|l| l.version.clone());
            let found = locked_version
                .as_deref()
                .and_then(|v| find_package(&searched, &source, Some(v), constraints.as_deref()))
                .or_else(|| find_package(&searched, &source, None, constraints.as_deref()));
            let Some((version, pkg)) = found else {
                return Err(Diag::new(format!(
                    "provider {source}{} is not in the plugin directories {}",
                    constraints
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default(),
                    plugin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .hint(format!(
                    "put it under {}/{source}/VERSION/{}/",
                    plugin_dirs[0].display(),
                    platform()
                )));
            };
            let hash = hash_package(&pkg)
                .map_err(|e| Diag::new(format!("hashing {}: {e}", pkg.display())))?;
            if let Some(prev) = previous.get(&source)
                && prev.version == version
                && !prev.hashes.contains(&hash)
            {
                return Err(Diag::new(format!("the {source} {version} package in the mirror does not match the checksums in {LOCK_FILE}"))
                        .hint("if the provider was rebuilt on purpose, delete its entry from the lock file and run init again"));
            }
            out.push((
                source,
                LockedProvider {
                    version,
                    constraints,
                    hashes: vec![hash],
                },
            ));
        }
        write_lock_file(&stack.join(LOCK_FILE), &out)
            .map_err(|e| Diag::new(format!("writing {LOCK_FILE}: {e}")))?;
        std::fs::create_dir_all(stack.join(".terraform"))
            .map_err(|e| Diag::new(format!("creating .terraform: {e}")))?;
        let dirs: Vec<String> = plugin_dirs
            .iter()
            .zip(&searched)
            .map(|(given, d)| {
                d.canonicalize()
                    .unwrap_or_else(|_| given.clone())
                    .display()
                    .to_string()
            })
            .collect();
        std::fs::write(
            stack.join(DIRS_FILE),
            serde_json::to_vec_pretty(&dirs).unwrap_or_default(),
        )
        .map_err(|e| Diag::new(format!("writing {DIRS_FILE}: {e}")))?;
        Ok(out)
    }

    /// Loads what `init` locked and verifies each provider's hash; providers
    /// will start with `launch`.
    pub fn load(
        stack: &Path,
        root: &ModuleConfig,
        launch: &LaunchOptions,
    ) -> Result<ProviderCatalog, Diag> {
        let not_init = || {
            Diag::new("the stack is not initialized").hint("run plumb infra init -plugin-dir=DIR")
        };
        let dirs: Vec<PathBuf> = std::fs::read(stack.join(DIRS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .ok_or_else(not_init)?
            .into_iter()
            .map(|d| in_stack(stack, Path::new(&d)))
            .collect();
        let locks = read_lock_file(&stack.join(LOCK_FILE)).ok_or_else(not_init)?;
        let mut binaries = BTreeMap::new();
        for (source, _) in required_sources(root) {
            let lock = locks.get(&source).ok_or_else(|| {
                Diag::new(format!(
                    "provider {source} is required but not in {LOCK_FILE}"
                ))
                .hint("run plumb infra init to install it")
            })?;
            let (_, pkg) =
                find_package(&dirs, &source, Some(&lock.version), None).ok_or_else(|| {
                    Diag::new(format!(
                        "provider {source} {} is locked but missing from the plugin directories",
                        lock.version
                    ))
                    .hint("run plumb infra init")
                })?;
            let hash = hash_package(&pkg)
                .map_err(|e| Diag::new(format!("hashing {}: {e}", pkg.display())))?;
            if !lock.hashes.contains(&hash) {
                return Err(Diag::new(format!(
                    "provider {source} {} does not match the checksums in {LOCK_FILE} (found {hash})",
                    lock.version
                ))
                .hint("someone changed the provider binary; if that was intended, remove its entry from the lock file and run init"));
            }
            let ty = source.rsplit('/').next().unwrap_or_default();
            let bin = binary_in(&pkg, ty).ok_or_else(|| {
                Diag::new(format!(
                    "no terraform-provider-{ty} binary in {}",
                    pkg.display()
                ))
            })?;
            binaries.insert(source, bin);
        }
        Ok(ProviderCatalog {
            binaries,
            locks,
            launch: launch.clone(),
        })
    }

    /// The source address a local provider name stands for.
    pub fn source_for(&self, root: &ModuleConfig, local: &str) -> String {
        root.required_providers
            .get(local)
            .map(|p| p.source.clone())
            .unwrap_or_else(|| normalize_source(local))
    }

    /// The locked providers.
    pub fn locks(&self) -> &BTreeMap<String, LockedProvider> {
        &self.locks
    }

    /// Starts the provider a local name stands for.
    pub async fn start(&self, root: &ModuleConfig, local: &str) -> Result<Provider, Diag> {
        let source = self.source_for(root, local);
        let bin = self.binaries.get(&source).ok_or_else(|| {
            Diag::new(format!("provider {source} is not installed")).hint("run plumb infra init")
        })?;
        Provider::start_with(bin, &self.launch)
            .await
            .map_err(|e| Diag::new(format!("provider {source}: {e}")))
    }
}

fn read_lock_file(path: &Path) -> Option<BTreeMap<String, LockedProvider>> {
    let text = std::fs::read_to_string(path).ok()?;
    let body = hcl_edit::parser::parse_body(&text).ok()?;
    let mut out = BTreeMap::new();
    for b in body
        .blocks()
        .filter(|b| b.ident.value().as_str() == "provider")
    {
        let Some(label) = b.labels.first() else {
            continue;
        };
        let source = match label {
            hcl_edit::structure::BlockLabel::String(s) => s.value().to_string(),
            hcl_edit::structure::BlockLabel::Ident(i) => i.value().to_string(),
        };
        let version = b
            .body
            .get_attribute("version")
            .and_then(|a| a.value.as_str())
            .unwrap_or_default()
            .to_string();
        let constraints = b
            .body
            .get_attribute("constraints")
            .and_then(|a| a.value.as_str())
            .map(str::to_string);
        let hashes = match b.body.get_attribute("hashes").map(|a| &a.value) {
            Some(Expression::Array(a)) => a
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        out.insert(
            source,
            LockedProvider {
                version,
                constraints,
                hashes,
            },
        );
    }
    Some(out)
}

fn write_lock_file(path: &Path, providers: &[(String, LockedProvider)]) -> std::io::Result<()> {
    let mut s = String::from(
        "# This file is maintained automatically by \"plumb infra init\".\n# Manual edits may be lost in future updates.\n",
    );
    for (source, l) in providers {
        s.push_str(&format!(
            "\nprovider \"{source}\" {{\n  version     = \"{}\"\n",
            l.version
        ));
        if let Some(c) = &l.constraints {
            s.push_str(&format!("  constraints = \"{c}\"\n"));
        }
        s.push_str("  hashes = [\n");
        for h in &l.hashes {
            s.push_str(&format!("    \"{h}\",\n"));
        }
        s.push_str("  ]\n}\n");
    }
    let tmp = path.with_extension("hcl.tmp");
    std::fs::write(&tmp, s)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints() {
        assert!(meets("3.6.1", ">= 3.0"));
        assert!(meets("3.6.1", "~> 3.6"));
        assert!(!meets("4.0.0", "~> 3.6"));
        assert!(meets("3.6.9", "~> 3.6.1"));
        assert!(!meets("3.7.0", "~> 3.6.1"));
        assert!(meets("1.0.0", "!= 2.0.0, < 2"));
    }

    #[test]
    fn h1_hash_matches_go_dirhash() {
        // Go's dirhash.Hash1 over a directory holding one file "a" with "hello\n".
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "hello\n").unwrap();
        let h = hash_package(d.path()).unwrap();
        let line = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a\n";
        let expect =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(line.as_bytes()));
        assert_eq!(h, format!("h1:{expect}"));
    }
}
