//! The plaintext-secret check: an Application whose sources hold a secret in
//! plain text is refused before anything reaches the cluster.
//!
//! Two levels. The source files of each source (its path, the trees its
//! kustomizations refer to, its Helm value files) are read from the commit
//! being rendered, so a Secret whose `data` is not SOPS-encrypted is judged
//! as written in Git, before any decryption. The rendered objects, Secrets
//! excepted (they legitimately hold decrypted values), are searched for
//! credentials too, which covers Helm templates and values. Findings name
//! `file:line:col` and the rule, never the value.

use std::collections::BTreeSet;

use plumb_git::{GitCache, Snapshot};
use plumb_model::application::ApplicationSource;
use plumb_model::{Application, Manifest};
use plumb_render::Rendered;
use plumb_secrets::scan::{self, Finding, IGNORE_FILE, MODE_ANNOTATION, Mode, Scan};

use crate::check::{Check, CheckContext, CheckFuture, Refusal, Refused};

/// The check's name in refusals.
/// The name of the plaintext-secret check (in [`Refusal::check`](crate::Refusal)).
pub const NAME: &str = "plaintext-secrets";

/// Most files read from one source (a guard against huge trees).
const MAX_FILES: usize = 20_000;

/// Refuses (or warns about) plaintext secrets, per [`Mode`].
#[derive(Debug, Clone)]
pub struct PlaintextSecrets {
    git: GitCache,
    mode: Mode,
}

impl PlaintextSecrets {
    /// A check reading sources from `git` (the pipeline's cache: the
    /// commits it renders are there), in `mode` unless an Application's
    /// [`MODE_ANNOTATION`] asks for a stricter one.
    pub fn new(git: GitCache, mode: Mode) -> PlaintextSecrets {
        PlaintextSecrets { git, mode }
    }

    /// The mode for `app`, or a refusal when its annotation is not a mode.
    pub fn mode_for(&self, app: &Application) -> Result<Mode, Refusal> {
        match app.metadata.annotations.get(MODE_ANNOTATION) {
            None => Ok(self.mode),
            Some(v) => v
                .parse::<Mode>()
                .map(|m| self.mode.stricter(m))
                .map_err(|e| Refusal {
                    check: NAME,
                    rule: "secrets-mode".into(),
                    origin: None,
                    message: format!("the Application's {MODE_ANNOTATION} annotation: {e}"),
                }),
        }
    }
}

/// Every finding in `app`'s sources at `commits` and in `manifests`.
pub fn scan_application(
    git: &GitCache,
    app: &Application,
    commits: &[String],
    manifests: &[Manifest],
) -> Result<Vec<Finding>, String> {
    let sources = app.sources();
    let mut found = Vec::new();
    for (i, (source, commit)) in sources.iter().zip(commits).enumerate() {
        let snapshot = git
            .snapshot(&source.repo_url, commit)
            .map_err(|e| e.to_string())?;
        let mut s = Scan::new();
        collect(&snapshot, source, &mut s).map_err(|e| e.to_string())?;
        // Rendered objects are located in the files of the only source;
        // with several, at the object.
        if i == 0 {
            let mut rendered = Scan::new();
            let target = if sources.len() == 1 {
                &mut s
            } else {
                &mut rendered
            };
            for m in manifests {
                target.add_manifest(&m.object, &m.origin);
            }
            found.extend(rendered.finish());
        }
        found.extend(s.finish());
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Add a source's files to `s`: its path, what its kustomizations refer
/// to, its Helm value files, and the ignore file at the repository root.
fn collect(
    snapshot: &Snapshot,
    source: &ApplicationSource,
    s: &mut Scan,
) -> Result<(), plumb_git::SnapshotError> {
    let root = source
        .path
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .trim_start_matches("./");
    let root = if root == "." { "" } else { root };
    let mut pending: Vec<String> = vec![root.to_string(), IGNORE_FILE.to_string()];
    if let Some(helm) = &source.helm {
        for f in &helm.value_files {
            let joined = if root.is_empty() {
                f.clone()
            } else {
                format!("{root}/{f}")
            };
            pending.push(normalize(&joined));
        }
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut count = 0usize;
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) || count > MAX_FILES {
            continue;
        }
        let entries = if snapshot.is_dir(&path)? {
            snapshot.files(&path, true)?
        } else if !path.is_empty() && snapshot.is_file(&path)? {
            vec![plumb_git::FileEntry {
                data: snapshot.read(&path)?,
                path: path.clone(),
            }]
        } else {
            continue;
        };
        for e in entries {
            count += 1;
            if s.has_file(&e.path) {
                continue;
            }
            let name = e.path.rsplit('/').next().unwrap_or(&e.path);
            if matches!(
                name,
                "kustomization.yaml" | "kustomization.yml" | "Kustomization"
            ) && let Ok(text) = std::str::from_utf8(&e.data)
            {
                pending.extend(scan::kustomize_references(&e.path, text));
            }
            s.add_file(&e.path, &e.data);
        }
    }
    Ok(())
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

impl Check for PlaintextSecrets {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check<'a>(&'a self, ctx: CheckContext<'a>, rendered: &'a mut Rendered) -> CheckFuture<'a> {
        Box::pin(async move {
            let mode = self.mode_for(ctx.app)?;
            if mode == Mode::Allow {
                return Ok(());
            }
            let git = self.git.clone();
            let app = ctx.app.clone();
            let commits = rendered.commits.clone();
            let manifests = rendered.manifests.clone();
            let found = tokio::task::spawn_blocking(move || {
                scan_application(&git, &app, &commits, &manifests)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|message| Refusal {
                check: NAME,
                rule: "secrets-scan".into(),
                origin: None,
                message: format!(
                    "the sources could not be scanned for plaintext secrets: {message}"
                ),
            })?;
            if found.is_empty() {
                return Ok(());
            }
            if mode == Mode::Warn || ctx.admitted {
                for f in &found {
                    tracing::warn!(app = %ctx.app.key(), finding = %f, "plaintext secret (secrets mode {mode}: not refused)");
                }
                return Ok(());
            }
            Err(Refused(
                found
                    .into_iter()
                    .map(|f| Refusal {
                        check: NAME,
                        rule: f.rule.id().to_string(),
                        origin: Some(f.origin()),
                        message: f.hint,
                    })
                    .collect(),
            ))
        })
    }
}
