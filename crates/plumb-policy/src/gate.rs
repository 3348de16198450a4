//! The gate: every image of an Application judged before anything is applied.
//!
//! For each rendered object the gate finds the images, picks the policies
//! that cover the Application and the image, and judges each distinct image
//! once, concurrently: its tag, its digest (resolved now, so a re-tag is
//! seen), its signatures and its scan report. One refused image refuses the
//! whole Application with every reason at once; an admitted one is pinned to
//! its digest when a policy asks for that.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use plumb_model::{Application, Manifest};
use plumb_oci::Digest;
use plumb_pipeline::{Check, CheckContext, CheckFuture, Refusal, Refused};
use plumb_render::Rendered;

use crate::file::{Policy, PolicyFile};
use crate::image::{ImageName, find_images};
use crate::registry::{Registries, RegistryAccess};
use crate::rules::{Denial, ImageVerdict, Rule, check_scan, check_signatures, check_tag};

/// The annotation by which an Application names the policies it must pass
/// (comma-separated), besides those whose scope covers it.
pub const POLICY_ANNOTATION: &str = "plumb.dev/policy";

/// Images judged at once.
const CONCURRENCY: usize = 32;

/// The deploy gate.
#[derive(Clone)]
pub struct Gate {
    file: Arc<PolicyFile>,
    registries: Arc<Registries>,
    enforce_on_drift: bool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("policies", &self.file.policies.len())
            .field("enforce_on_drift", &self.enforce_on_drift)
            .finish_non_exhaustive()
    }
}

/// The gate's verdicts for one render, and the digests to pin.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// One verdict per image use that some policy covers, in object order.
    pub verdicts: Vec<ImageVerdict>,
    /// Denials about the Application itself (an unknown policy named).
    pub application: Vec<Denial>,
    /// (manifest index, JSON pointer, pinned image).
    pins: Vec<(usize, String, String)>,
}

impl Evaluation {
    /// Whether everything may run.
    pub fn admitted(&self) -> bool {
        self.application.is_empty() && self.verdicts.iter().all(ImageVerdict::admitted)
    }

    /// Every denial as a located refusal.
    pub fn refusals(&self) -> Vec<Refusal> {
        let app = self.application.iter().map(|d| Refusal {
            check: "deploy-gate",
            rule: d.rule.to_string(),
            origin: None,
            message: d.reason.clone(),
        });
        let images = self.verdicts.iter().flat_map(|v| {
            v.denials.iter().map(move |d| Refusal {
                check: "deploy-gate",
                rule: d.rule.to_string(),
                origin: Some(v.origin.clone()),
                message: format!(
                    "{}: image {}: {} (policy {})",
                    v.object, v.image, d.reason, d.policy
                ),
            })
        });
        app.chain(images).collect()
    }

    /// Write the pinned images into `manifests`.
    pub fn apply_pins(&self, manifests: &mut [Manifest]) {
        for (index, pointer, value) in &self.pins {
            if let Some(slot) = manifests
                .get_mut(*index)
                .and_then(|m| m.object.pointer_mut(pointer))
            {
                *slot = serde_json::Value::String(value.clone());
            }
        }
    }
}

/// What was decided about one distinct image.
#[derive(Debug, Clone, Default)]
struct Judgement {
    policies: Vec<String>,
    digest: Option<Digest>,
    denials: Vec<Denial>,
    pin: bool,
}

/// `Kind/namespace/name`, the namespace defaulting to the destination's as
/// the engine will default it.
fn object_name(m: &Manifest, default_namespace: Option<&str>) -> String {
    match m.namespace().or(default_namespace) {
        Some(ns) => format!("{}/{ns}/{}", m.kind(), m.name()),
        None => format!("{}/{}", m.kind(), m.name()),
    }
}

/// Which keys and claims a policy's signature rule means, as a cache key.
fn fingerprint(policy: &Policy) -> String {
    let Some(rule) = &policy.signatures else {
        return String::new();
    };
    let keys: Vec<String> = rule
        .keys
        .iter()
        .map(|(_, k)| k.hint().unwrap_or_default())
        .collect();
    format!("{}|{:?}", keys.join(","), rule.annotations)
}

impl Gate {
    /// A gate over `file`, reaching registries with `access`.
    pub fn new(file: PolicyFile, access: RegistryAccess) -> Gate {
        Gate {
            file: Arc::new(file),
            registries: Arc::new(Registries::new(access)),
            enforce_on_drift: false,
        }
    }

    /// Remember proven signatures under `dir` too, across processes.
    pub fn with_cache_dir(mut self, dir: std::path::PathBuf) -> Gate {
        let access = self.registries.access().clone();
        self.registries = Arc::new(Registries::new(access).with_cache_dir(dir));
        self
    }

    /// Refuse a self-heal of already admitted commits too, when the policy
    /// changed since (default: only warn).
    pub fn with_enforce_on_drift(mut self, enforce: bool) -> Gate {
        self.enforce_on_drift = enforce;
        self
    }

    /// The policy file.
    pub fn file(&self) -> &PolicyFile {
        &self.file
    }

    /// The policies that cover `app`: by scope, and those its annotation names.
    fn policies_for(&self, app: &Application) -> (Vec<&Policy>, Vec<Denial>) {
        let meta = &app.metadata;
        let project = app.spec.project.as_deref().unwrap_or("default");
        let mut chosen: Vec<&Policy> = self
            .file
            .policies
            .iter()
            .filter(|p| p.covers_application(meta.namespace.as_deref(), &meta.name, project))
            .collect();
        let mut denials = Vec::new();
        let named = meta
            .annotations
            .get(POLICY_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for name in named {
            match self.file.policy(name) {
                Some(p) if !chosen.iter().any(|c| c.name == p.name) => chosen.push(p),
                Some(_) => {}
                None => denials.push(Denial {
                    rule: Rule::Policy,
                    policy: name.to_string(),
                    reason: format!(
                        "the Application's {POLICY_ANNOTATION} annotation names policy {name:?}, which {} does not define",
                        self.file.path.display()
                    ),
                }),
            }
        }
        (chosen, denials)
    }

    /// Judge every image of `manifests` for `app`.
    pub async fn evaluate(&self, app: &Application, manifests: &[Manifest]) -> Evaluation {
        let (policies, application) = self.policies_for(app);
        let mut eval = Evaluation {
            application,
            ..Default::default()
        };
        if policies.is_empty() {
            return eval;
        }
        // (manifest, pointer, image as written) for every covered use.
        let mut uses = Vec::new();
        let mut distinct: BTreeMap<String, Vec<&Policy>> = BTreeMap::new();
        for (index, m) in manifests.iter().enumerate() {
            for u in find_images(&m.object, &self.file.image_paths) {
                let covering: Vec<&Policy> = match ImageName::parse(&u.image) {
                    Ok(name) => policies
                        .iter()
                        .copied()
                        .filter(|p| p.covers_image(&name.repository_ref()))
                        .collect(),
                    // An unusable name is judged by every policy of the Application.
                    Err(_) => policies.clone(),
                };
                if covering.is_empty() {
                    continue;
                }
                distinct.entry(u.image.clone()).or_insert(covering);
                uses.push((index, u));
            }
        }
        // Futures are built first, so the stream holds no closure (keeps the
        // whole check Send for the agent, which spawns it).
        let judging: Vec<_> = distinct
            .into_iter()
            .map(|(image, covering)| self.judge_named(image, covering))
            .collect();
        let judged: BTreeMap<String, Judgement> = stream::iter(judging)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (index, u) in uses {
            let Some(j) = judged.get(&u.image) else {
                continue;
            };
            let m = &manifests[index];
            if j.pin
                && j.denials.is_empty()
                && let (Some(d), Ok(name)) = (&j.digest, ImageName::parse(&u.image))
                && name.digest.is_none()
            {
                eval.pins.push((index, u.pointer.clone(), name.pinned(d)));
            }
            eval.verdicts.push(ImageVerdict {
                object: object_name(m, app.spec.destination.namespace.as_deref()),
                origin: m.origin.clone(),
                image: u.image.clone(),
                digest: j.digest.clone(),
                policies: j.policies.clone(),
                denials: j.denials.clone(),
            });
        }
        eval
    }

    async fn judge_named(&self, image: String, policies: Vec<&Policy>) -> (String, Judgement) {
        let j = self.judge(&image, &policies).await;
        (image, j)
    }

    /// Judge one image under the policies that cover it.
    async fn judge(&self, written: &str, policies: &[&Policy]) -> Judgement {
        let mut j = Judgement {
            policies: policies.iter().map(|p| p.name.clone()).collect(),
            ..Default::default()
        };
        let name = match ImageName::parse(written) {
            Ok(n) => n,
            Err(e) => {
                j.denials.push(Denial {
                    rule: Rule::Registry,
                    policy: policies.first().map(|p| p.name.clone()).unwrap_or_default(),
                    reason: e.message,
                });
                return j;
            }
        };
        for p in policies {
            if let Some(rule) = &p.tags
                && let Err(reason) = check_tag(&name, rule)
            {
                j.denials.push(Denial {
                    rule: Rule::Tag,
                    policy: p.name.clone(),
                    reason,
                });
            }
        }
        let needs_digest = policies
            .iter()
            .any(|p| p.signatures.is_some() || p.scan.is_some() || p.pin_digests);
        if !needs_digest {
            return j;
        }
        let digest = match self.registries.resolve(&name).await {
            Ok(d) => d,
            Err(reason) => {
                let policy = policies
                    .iter()
                    .find(|p| p.signatures.is_some() || p.scan.is_some() || p.pin_digests)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                j.denials.push(Denial {
                    rule: Rule::Registry,
                    policy,
                    reason,
                });
                return j;
            }
        };
        j.pin = policies.iter().any(|p| p.pin_digests);
        for p in policies {
            if let Some(rule) = &p.signatures {
                let keys: Vec<_> = rule.keys.iter().map(|(_, k)| k.clone()).collect();
                let print = fingerprint(p);
                let denial = match self
                    .registries
                    .signatures(&name, &digest, &keys, &print)
                    .await
                {
                    Ok(None) => None,
                    Ok(Some(search)) => {
                        match check_signatures(&name, rule, &search.verified, search.rejected) {
                            Ok(()) => {
                                self.registries.remember_signed(&name, &digest, &print);
                                None
                            }
                            Err(reason) => Some((Rule::Signature, reason)),
                        }
                    }
                    Err(reason) => Some((Rule::Registry, reason)),
                };
                if let Some((rule, reason)) = denial {
                    j.denials.push(Denial {
                        rule,
                        policy: p.name.clone(),
                        reason,
                    });
                }
            }
        }
        let scanning: Vec<&&Policy> = policies.iter().filter(|p| p.scan.is_some()).collect();
        if !scanning.is_empty() {
            match self.registries.scan_report(&name, &digest).await {
                Ok(report) => {
                    let today = jiff::Zoned::now().date();
                    for p in scanning {
                        if let Some(rule) = &p.scan
                            && let Err(reason) = check_scan(rule, report.as_ref(), today)
                        {
                            j.denials.push(Denial {
                                rule: Rule::Scan,
                                policy: p.name.clone(),
                                reason,
                            });
                        }
                    }
                }
                Err(reason) => j.denials.push(Denial {
                    rule: Rule::Registry,
                    policy: scanning[0].name.clone(),
                    reason,
                }),
            }
        }
        j.digest = Some(digest);
        j
    }
}

impl Check for Gate {
    fn name(&self) -> &'static str {
        "deploy-gate"
    }

    fn check<'a>(&'a self, ctx: CheckContext<'a>, rendered: &'a mut Rendered) -> CheckFuture<'a> {
        Box::pin(async move {
            let eval = self.evaluate(ctx.app, &rendered.manifests).await;
            if !eval.admitted() {
                let refusals = eval.refusals();
                if !ctx.admitted || self.enforce_on_drift {
                    return Err(Refused(refusals));
                }
                for r in &refusals {
                    tracing::warn!(app = %ctx.app.key(), refusal = %r, "the deploy policy no longer admits what runs; left running (--enforce-on-drift refuses)");
                }
            }
            eval.apply_pins(&mut rendered.manifests);
            Ok(())
        })
    }
}
