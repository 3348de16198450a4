//! Everything one walk shares between its tasks ([`WalkCtx`]): the
//! configuration, the providers (each started and configured once, on first
//! use), the values evaluated so far, the prior state, the changes found,
//! the `-parallelism` limit, the state writer and the progress reporter.
//!
//! Nodes and instances run as separate tasks and meet only here, behind
//! locks held for the length of a lookup or an insert, never across a
//! provider call.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hcl_edit::expr::Expression;
use plumb_state::{InstanceState, JournalRecord, StateSnapshot};
use plumb_tfplugin::value::convert;
use plumb_tfplugin::{Provider, Value};
use tokio::sync::{OnceCell, Semaphore};

use super::options::{WalkMode, WalkOptions};
use super::scope::{ModuleScope, Values};
use super::stored::resource_key;
use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr, module_path_within};
use crate::config::{ModuleConfig, Origin};
use crate::diag::Diag;
use crate::environment::Environment;
use crate::modules::ModuleInstances;
use crate::outcome::Change;
use crate::progress::Progress;
use crate::providers::ProviderCatalog;
use crate::statewriter::StateWriter;

/// A provider configuration: local name and alias.
type ProviderKey = (String, Option<String>);

/// Everything a walk shares.
pub(super) struct WalkCtx {
    pub(super) root: Arc<ModuleConfig>,
    pub(super) catalog: Arc<ProviderCatalog>,
    pub(super) env: Arc<Environment>,
    pub(super) providers: Mutex<HashMap<ProviderKey, Arc<OnceCell<Arc<Provider>>>>>,
    pub(super) provider_configs: Mutex<HashMap<ProviderKey, Value>>,
    pub(super) values: RwLock<Values>,
    pub(super) prior: Mutex<StateSnapshot>,
    pub(super) prior_index: HashMap<InstanceAddr, (InstanceState, String)>,
    pub(super) changes: Mutex<Vec<Change>>,
    pub(super) limit: Arc<Semaphore>,
    pub(super) opts: WalkOptions,
    pub(super) writer: Option<StateWriter>,
    pub(super) root_vars: BTreeMap<String, Value>,
    pub(super) import_ids: HashMap<InstanceAddr, (Expression, Origin)>,
    pub(super) moved_from: HashMap<InstanceAddr, InstanceAddr>,
    pub(super) targeted: Option<HashSet<ResourceAddr>>,
    /// Every module call's instances.
    pub(super) instances: ModuleInstances,
    pub(super) progress: Arc<dyn Progress>,
}

impl WalkCtx {
    /// Whether a walk with `-target` covers `r`: a target, something a
    /// target depends on, or anything in a targeted module instance (which
    /// takes in instances no longer configured there).
    pub(super) fn is_targeted(&self, r: &ResourceAddr) -> bool {
        self.targeted.as_ref().is_none_or(|t| {
            t.contains(r)
                || self
                    .opts
                    .module_targets
                    .iter()
                    .any(|m| module_path_within(&r.module, m))
        })
    }

    /// The values evaluated so far, to read.
    pub(super) fn read_values(&self) -> RwLockReadGuard<'_, Values> {
        self.values.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The values evaluated so far, to add one to.
    pub(super) fn write_values(&self) -> RwLockWriteGuard<'_, Values> {
        self.values.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The scope of the module instance at `module`, over `values`.
    pub(super) fn scope<'a>(
        &'a self,
        values: &'a Values,
        module: &'a [String],
        cfg: &'a ModuleConfig,
    ) -> ModuleScope<'a> {
        ModuleScope {
            values,
            instances: &self.instances,
            module,
            cfg,
            root_dir: &self.root.dir,
            cwd: &self.env.cwd,
            home: self.env.home.as_deref(),
            sops_keys: &self.env.sops_keys,
            count_index: None,
            each: None,
        }
    }

    /// The provider `name` (`alias`), started and configured on first use.
    pub(super) async fn provider(
        &self,
        name: &str,
        alias: Option<&str>,
    ) -> Result<Arc<Provider>, Diag> {
        let key = (name.to_string(), alias.map(str::to_string));
        let cell = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let p = cell
            .get_or_try_init(|| async {
                let p = self.catalog.start(&self.root, name).await?;
                let config = self
                    .provider_configs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| p.schema().provider.block.unset());
                let ty = p.schema().provider.block.implied_type();
                let config = convert(&config.deep_unmark(), &ty)
                    .map_err(|e| Diag::new(format!("provider {name}: {e}")))?;
                p.validate_provider_config(&config)
                    .await
                    .map_err(|e| Diag::new(format!("provider {name}: {e}")))?;
                p.configure(&config)
                    .await
                    .map_err(|e| Diag::new(format!("configuring provider {name}: {e}")))?;
                Ok::<_, Diag>(Arc::new(p))
            })
            .await?;
        Ok(p.clone())
    }

    /// Stops every provider the walk started.
    pub(super) async fn shutdown(&self) {
        let cells: Vec<_> = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for c in cells {
            if let Some(p) = c.get() {
                p.shutdown().await;
            }
        }
    }

    /// The instance's prior state (moved, imported or stored) and its
    /// resource's provider.
    pub(super) fn prior_instance(&self, inst: &InstanceAddr) -> Option<(InstanceState, String)> {
        self.prior_index.get(inst).cloned()
    }

    /// Sends an instance's new state (`None`: gone) to the state writer,
    /// when there is one; returns once it is durable.
    pub(super) async fn record(
        &self,
        inst: &InstanceAddr,
        provider: &str,
        state: Option<InstanceState>,
    ) -> Result<(), Diag> {
        let rec = JournalRecord {
            resource: resource_key(&inst.resource, provider),
            index_key: inst.key.as_ref().map(InstanceKey::to_json),
            instance: state,
        };
        if let Some(w) = &self.writer {
            w.record(rec)
                .await
                .map_err(|e| Diag::new(format!("{inst}: could not persist state: {e}")))?;
        }
        Ok(())
    }

    /// [`WalkCtx::record`], in a walk that applies.
    pub(super) async fn record_if_apply(
        &self,
        inst: &InstanceAddr,
        provider: &str,
        state: Option<InstanceState>,
    ) -> Result<(), Vec<Diag>> {
        if self.opts.mode == WalkMode::Apply {
            self.record(inst, provider, state)
                .await
                .map_err(|d| vec![d])?;
        }
        Ok(())
    }
}
