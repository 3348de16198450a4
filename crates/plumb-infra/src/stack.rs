//! A stack: one directory of `.tf` files, opened once, with the caller's
//! [`Environment`], and the operations that need no walk: installing and
//! loading providers, validating, choosing the state backend, locking, and
//! collecting variable values.
//!
//! The directory is given explicitly and every relative path a stack reads
//! (its files, `-var-file`, `-plugin-dir`, plan files, a local backend's
//! path) is resolved against it, the way Terraform resolves them after
//! `-chdir`. Nothing here changes the process's working directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plumb_state::{AnyBackend, LocalBackend, LockInfo, LockLease, PgBackend, StateBackend};

use crate::config::ModuleConfig;
use crate::diag::Diag;
use crate::environment::Environment;
use crate::error::InfraError;
use crate::providers::{self, LockedProvider, ProviderCatalog};
use crate::vars::{self, RootValues, VariableArg};

/// The version plumb writes into state and lock information.
pub const TOOL_VERSION: &str = concat!("plumb-", env!("CARGO_PKG_VERSION"));

/// One stack directory, its configuration loaded.
pub struct Stack {
    dir: PathBuf,
    config: Arc<ModuleConfig>,
    env: Arc<Environment>,
}

impl Stack {
    /// Loads the stack in `dir` (and the local modules it calls).
    pub fn open(dir: impl Into<PathBuf>, env: Arc<Environment>) -> Result<Stack, InfraError> {
        let dir = dir.into();
        let config = crate::parse::load(&dir)?;
        Ok(Stack {
            dir,
            config: Arc::new(config),
            env,
        })
    }

    /// The stack's directory, as given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root module's configuration.
    pub fn config(&self) -> &Arc<ModuleConfig> {
        &self.config
    }

    /// The caller's environment.
    pub fn environment(&self) -> &Arc<Environment> {
        &self.env
    }

    /// The state backend the configuration chooses: a local file by
    /// default, or the `backend` block's.
    /// State is kept encrypted when the `encryption` block says so.
    pub fn backend(&self) -> Result<AnyBackend, InfraError> {
        let encryption = crate::encryption::state_encryption(&self.config, &self.env)?;
        Ok(self.store()?.with_encryption(encryption))
    }

    fn store(&self) -> Result<AnyBackend, InfraError> {
        let Some(b) = &self.config.backend else {
            return Ok(AnyBackend::Local(LocalBackend::new(
                self.dir.join("terraform.tfstate"),
            )));
        };
        let attr = |name: &str| -> Result<Option<String>, InfraError> {
            match b.body.get_attribute(name) {
                Some(a) => {
                    let v = vars::literal(
                        &a.value,
                        &b.origin.file,
                        &self.dir,
                        self.env.home.as_deref(),
                    )?;
                    Ok(v.as_str().map(str::to_string))
                }
                None => Ok(None),
            }
        };
        match b.kind.as_str() {
            "local" => {
                let p = attr("path")?.unwrap_or_else(|| "terraform.tfstate".into());
                Ok(AnyBackend::Local(LocalBackend::new(self.dir.join(p))))
            }
            "pg" => {
                let conn = attr("conn_str")?
                    .or_else(|| self.env.pg_conn_str.clone())
                    .ok_or_else(|| {
                        InfraError::from(
                            b.origin
                                .diag("the pg backend needs conn_str")
                                .hint("set conn_str in the backend block or PG_CONN_STR"),
                        )
                    })?;
                Ok(AnyBackend::Pg(PgBackend::new(conn)))
            }
            other => Err(b
                .origin
                .diag(format!("backend {other:?} is not supported"))
                .hint("use local or pg")
                .into()),
        }
    }

    /// `init`: picks every required provider from the plugin directories
    /// (`plugin_dirs`, else the environment's), and writes the lock file.
    pub fn init(
        &self,
        plugin_dirs: &[PathBuf],
    ) -> Result<Vec<(String, LockedProvider)>, InfraError> {
        let dirs = if plugin_dirs.is_empty() {
            providers::default_plugin_dirs(&self.dir, &self.env)
        } else {
            plugin_dirs.to_vec()
        };
        Ok(ProviderCatalog::init(&self.dir, &self.config, &dirs)?)
    }

    /// The providers `init` locked, each checked against its hash.
    pub fn providers(&self) -> Result<ProviderCatalog, InfraError> {
        Ok(ProviderCatalog::load(
            &self.dir,
            &self.config,
            &self.env.launch,
        )?)
    }

    /// Checks the configuration: its graph, and every block against its
    /// provider's schema. Returns the problems found.
    pub async fn validate(&self, providers: &ProviderCatalog) -> Result<Vec<Diag>, InfraError> {
        crate::engine::build_graph(&self.config, None)?;
        Ok(crate::validate::check(&self.config, providers).await)
    }

    /// Takes the state lock for `operation` (e.g. `OperationTypeApply`),
    /// waiting up to `timeout` for another holder to let go.
    pub async fn lock(
        &self,
        backend: &AnyBackend,
        operation: &str,
        timeout: Duration,
    ) -> Result<LockLease, InfraError> {
        let info =
            LockInfo::for_operation(operation, &backend.describe(), TOOL_VERSION, &self.env.user);
        Ok(backend.lock(info, timeout).await?)
    }

    /// Root variable values from every source, later ones winning: the
    /// environment's `TF_VAR_*`, `terraform.tfvars(.json)`,
    /// `*.auto.tfvars(.json)`, then `args` in order. SOPS-encrypted files
    /// are decrypted with the environment's keys and their values marked
    /// sensitive.
    pub fn variables(&self, args: &[VariableArg]) -> Result<RootValues, InfraError> {
        Ok(vars::collect(&self.config, args, &self.env)?)
    }
}
