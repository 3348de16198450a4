//! The process environment, read once, for plumb-infra.
//!
//! plumb-infra reads no environment variable itself; this is the one place
//! `plumb infra` looks at them, after `-chdir` is resolved, and hands the
//! result over as a [`plumb_infra::Environment`]. That includes the age keys:
//! the SOPS ones (`--sops-age-key-file`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`,
//! `~/.config/sops/age/keys.txt`, as `plumb sync` reads them) and the state's
//! (`--state-age-key-file`, `PLUMB_STATE_AGE_KEY_FILE`, else the SOPS ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plumb_infra::Environment;
use plumb_secrets::sops::Keyring;
use plumb_tfplugin::LaunchOptions;

use super::report::Failure;

/// The age identities `plumb infra` decrypts with: the SOPS keys, and the
/// keys that open state. Relative key files are read in `cwd`.
pub fn keys(
    cwd: &Path,
    sops_age_key_file: Option<&Path>,
    state_age_key_file: Option<&Path>,
) -> Result<(Keyring, Keyring), Failure> {
    let sops = crate::secrets::keyring(&crate::secrets::KeyArgs {
        sops_age_key_file: sops_age_key_file.map(|f| cwd.join(f)),
    })
    .map_err(|e| {
        Failure::new(
            e.to_string(),
            "pass an age key file (AGE-SECRET-KEY-1… lines) with --sops-age-key-file",
        )
    })?;
    let state = match state_age_key_file {
        Some(f) => {
            let mut k = Keyring::new();
            k.add_file(&cwd.join(f)).map_err(|e| {
                Failure::new(
                    e.to_string(),
                    "pass an age key file (AGE-SECRET-KEY-1… lines) with --state-age-key-file",
                )
            })?;
            k
        }
        None => sops.clone(),
    };
    Ok((sops, state))
}

/// The environment as `plumb infra` run in `cwd` (the stack's directory
/// with `-chdir`, else the process's working directory) sees it, with the
/// age keys already read.
pub fn read(cwd: PathBuf, (sops_keys, state_keys): (Keyring, Keyring)) -> Environment {
    let var = |name: &str| std::env::var(name).ok();
    let home = var("HOME").map(PathBuf::from);
    let tf_vars: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let name = k.to_str()?.strip_prefix("TF_VAR_")?.to_string();
            Some((name, v.into_string().ok()?))
        })
        .collect();
    let cli_config_file = var("TF_CLI_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_deref().map(|h| h.join(".terraformrc")));
    Environment {
        cwd,
        tf_vars,
        pg_conn_str: var("PG_CONN_STR"),
        user: var("USER").unwrap_or_else(|| "unknown".into()),
        plugin_dir: var("PLUMB_PLUGIN_DIR").map(Into::into),
        cli_config_file,
        launch: LaunchOptions::from_env(|name| std::env::var_os(name)),
        home,
        sops_keys,
        state_keys,
    }
}

/// The working directory an un-`-chdir`ed run sees as `path.cwd`.
pub fn process_cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}
