//! What plumb-infra needs to know about the process that runs it, passed in
//! rather than read.
//!
//! A library that reads its caller's environment behind its back cannot be
//! run twice in one process with different settings, cannot be tested
//! without mutating globals, and surprises an agent that embeds it. So the
//! command line reads the environment once, fills an [`Environment`] and
//! hands it over; nothing in this crate calls `std::env` for configuration
//! or changes the working directory. The stack directory itself is passed
//! separately, to [`crate::Stack::open`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use plumb_secrets::sops::Keyring;
use plumb_tfplugin::LaunchOptions;

/// The caller's environment, as far as stacks are concerned.
#[derive(Clone, Debug)]
pub struct Environment {
    /// The working directory a stack's expressions see as `path.cwd`: the
    /// stack's directory when the command line was given `-chdir`, as with
    /// Terraform.
    pub cwd: PathBuf,
    /// The user's home directory (`HOME`), for `pathexpand()`.
    pub home: Option<PathBuf>,
    /// Root variable values given as `TF_VAR_name` environment variables,
    /// by name; the lowest-precedence source of values.
    pub tf_vars: BTreeMap<String, String>,
    /// The pg backend's connection string when its block sets no
    /// `conn_str` (`PG_CONN_STR`).
    pub pg_conn_str: Option<String>,
    /// Who takes the state locks this process takes (`USER`), shown to
    /// whoever finds them held.
    pub user: String,
    /// Plugin directories for `init` when none are given, as a path list
    /// (`PLUMB_PLUGIN_DIR`).
    pub plugin_dir: Option<OsString>,
    /// The Terraform CLI configuration whose `filesystem_mirror` blocks
    /// name plugin directories when neither `-plugin-dir` nor
    /// [`Environment::plugin_dir`] does (`TF_CLI_CONFIG_FILE`, else
    /// `~/.terraformrc`).
    pub cli_config_file: Option<PathBuf>,
    /// How provider processes are started.
    pub launch: LaunchOptions,
    /// The age identities that decrypt SOPS-encrypted variable files and
    /// `sops_file()` (the command line fills it from
    /// `--sops-age-key-file`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY` and
    /// `~/.config/sops/age/keys.txt`).
    pub sops_keys: Keyring,
    /// The age identities that open an encrypted state (the command line
    /// fills it from `--state-age-key-file` or `PLUMB_STATE_AGE_KEY_FILE`,
    /// else with the SOPS keys).
    pub state_keys: Keyring,
}

impl Default for Environment {
    /// An environment that sets nothing: the working directory `.`, no
    /// home, no variables, no keys, user `unknown`.
    fn default() -> Environment {
        Environment {
            cwd: PathBuf::from("."),
            home: None,
            tf_vars: BTreeMap::new(),
            pg_conn_str: None,
            user: "unknown".into(),
            plugin_dir: None,
            cli_config_file: None,
            launch: LaunchOptions::default(),
            sops_keys: Keyring::new(),
            state_keys: Keyring::new(),
        }
    }
}
