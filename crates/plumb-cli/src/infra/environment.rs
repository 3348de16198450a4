//! The process environment, read once, for plumb-infra.
//!
//! plumb-infra reads no environment variable itself; this is the one place
//! `plumb infra` looks at them, after `-chdir` is resolved, and hands the
//! result over as a [`plumb_infra::Environment`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use plumb_infra::Environment;
use plumb_tfplugin::LaunchOptions;

/// The environment as `plumb infra` run in `cwd` (the stack's directory
/// with `-chdir`, else the process's working directory) sees it.
pub fn read(cwd: PathBuf) -> Environment {
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
    }
}

/// The working directory an un-`-chdir`ed run sees as `path.cwd`.
pub fn process_cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}
