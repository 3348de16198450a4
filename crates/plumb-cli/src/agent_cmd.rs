//! `plumb agent` and `plumb token create`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr};
use plumb_agent::notify::NotificationConfig;
use plumb_agent::{Agent, AgentConfig, Role, Store};
use plumb_render::Tools;
use plumb_server::AuthMode;

/// Parse `90`, `90s`, `5m`, `2h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 30s, 5m, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `plumb agent` arguments.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Application files, or directories of them (re-read when they change).
    #[arg(value_name = "APPS", required_unless_present_any = ["app_namespaces", "in_cluster"])]
    apps: Vec<PathBuf>,
    /// Watch Application objects (argoproj.io/v1alpha1) in this namespace of
    /// the current cluster and write their status back (repeatable).
    #[arg(long = "app-namespace", value_name = "NS")]
    app_namespaces: Vec<String>,
    /// Run inside the cluster: watch Application objects in the pod's own
    /// namespace (unless --app-namespace says otherwise).
    #[arg(long)]
    in_cluster: bool,
    /// Address for the API, UI, webhooks and metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How often each repository is checked for new commits.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// How often every Application is compared with the cluster regardless of events (0: never).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Applications reconciled at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
    /// Objects applied at once within a sync step.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// History entries kept per Application.
    #[arg(long, default_value_t = 50)]
    history_limit: usize,
    /// Largest share of an Application's objects an automated prune may delete.
    #[arg(long, default_value_t = 50.0, value_name = "PERCENT")]
    max_prune_percent: f64,
    /// Secret push webhooks must be signed with (GitHub/Gitea HMAC, GitLab token).
    #[arg(long, env = "PLUMB_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Notifications file (webhook targets and events).
    #[arg(long, value_name = "FILE")]
    notifications: Option<PathBuf>,
    /// Kubeconfig for destinations.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Git credentials file (default: DATA_DIR/git-credentials.yaml when present).
    #[arg(long, value_name = "PATH")]
    git_credentials: Option<PathBuf>,
    #[command(flatten)]
    policy: crate::policy::AgentPolicyArgs,
    #[command(flatten)]
    secrets: crate::secrets_scan::ModeArg,
    #[command(flatten)]
    keys: crate::secrets::KeyArgs,
    #[command(flatten)]
    refs: crate::secret_refs::RefArgs,
    #[command(flatten)]
    health: crate::health::HealthArgs,
    /// Serve the API and UI without authentication. Anyone who can reach the
    /// address can change your clusters.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// Run the agent until SIGTERM or Ctrl-C.
pub async fn agent(data_dir: &Path, args: AgentArgs) -> miette::Result<ExitCode> {
    let creds = crate::gitops::git_credentials(data_dir, args.git_credentials.as_deref())?;
    let notifications = match &args.notifications {
        Some(p) => NotificationConfig::load(p).map_err(|e| miette::miette!("{e}"))?,
        None => NotificationConfig::default(),
    };
    let mut config = AgentConfig::new(data_dir.to_path_buf(), args.apps.clone());
    config.kubeconfig = args.kubeconfig.clone();
    config.poll_interval = args.poll_interval;
    config.resync_interval = args.resync_interval;
    config.parallelism = args.parallelism.max(1);
    config.concurrency = args.concurrency.max(1);
    config.history_limit = args.history_limit.max(1);
    config.max_prune_share = (args.max_prune_percent / 100.0).clamp(0.0, 1.0);
    config.webhook_secret = args.webhook_secret.clone();
    config.notifications = notifications;
    config.credentials = creds.clone();
    config.tools = Tools::from_env();
    config.keyring = crate::secrets::keyring(&args.keys)?;
    config.secret_refs = crate::secret_refs::secret_refs(&args.refs)?;
    config.app_namespaces = args.app_namespaces.clone();
    if args.in_cluster && config.app_namespaces.is_empty() {
        let own =
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "argocd".to_string());
        config.app_namespaces.push(own);
    }
    config.health = plumb_pipeline::HealthSource::new(
        crate::health::load(&args.health.paths)?,
        plumb_health::Limits::default(),
    );
    config.argocd_cm = args.health.configmap.clone();
    config.checks = crate::policy::checks(
        data_dir,
        args.policy.policy.as_deref(),
        args.policy.enforce_on_drift,
    )?;
    // The agent's pipeline fetches into DATA_DIR/git; the check reads the
    // same cache. Secrets first: refusing them costs nothing.
    if let Some(c) = crate::secrets_scan::check(
        plumb_git::GitCache::new(data_dir.join("git"), creds),
        args.secrets.secrets_plaintext,
    ) {
        config.checks.0.insert(0, c);
    }

    // Bind before anything else: a taken port is the commonest failure.
    let listener = plumb_server::bind(args.listen)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", args.listen))?;
    let auth = if args.insecure_no_auth {
        eprintln!(
            "WARNING: --insecure-no-auth: the API and UI on {} accept every request as admin. \
             Anyone who can reach it can change your clusters.",
            args.listen
        );
        AuthMode::Disabled
    } else {
        let store = Store::open(data_dir).into_diagnostic()?;
        if store.token_count().into_diagnostic()? == 0 {
            let token = plumb_agent::store::new_token();
            store
                .add_token(&token, Role::Admin, "initial admin")
                .into_diagnostic()?;
            eprintln!("Created the first admin token. It is shown once; store it now:");
            println!("{token}");
        }
        AuthMode::Tokens
    };
    let agent = Agent::start(config).await.into_diagnostic()?;
    eprintln!(
        "plumb agent: {} Applications, listening on http://{}",
        agent.len(),
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let router = plumb_server::router(agent.clone(), auth);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plumb_server::serve_on(listener, router, async move {
        let _ = stop_rx.await;
    }));
    wait_for_signal().await;
    eprintln!("plumb agent: stopping (finishing running syncs)");
    agent.shutdown(Duration::from_secs(60)).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    eprintln!("plumb agent: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `plumb token create` arguments.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token may do.
    #[arg(long, value_parser = ["admin", "readonly"], default_value = "readonly")]
    role: String,
    /// A name to remember it by.
    #[arg(long, default_value = "")]
    name: String,
}

/// Create a token in the data directory's store; print it alone on stdout.
pub fn token_create(data_dir: &Path, args: TokenCreateArgs) -> miette::Result<ExitCode> {
    let role: Role = args
        .role
        .parse()
        .map_err(|e: String| miette::miette!("{e}"))?;
    let store = Store::open(data_dir).into_diagnostic()?;
    let token = plumb_agent::store::new_token();
    store
        .add_token(&token, role, &args.name)
        .into_diagnostic()?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// `table` or `json`.
    #[arg(long, short = 'o', value_parser = ["table", "json"], default_value = "table")]
    output: String,
}

/// List the data directory's tokens.
pub fn token_list(data_dir: &Path, args: TokenListArgs) -> miette::Result<ExitCode> {
    let store = Store::open(data_dir).into_diagnostic()?;
    let tokens = store.tokens().into_diagnostic()?;
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&tokens).into_diagnostic()?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<14}{:<10}{:<22}NAME", "ID", "ROLE", "CREATED");
    for t in &tokens {
        let created = jiff::Timestamp::from_second(t.created)
            .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|_| t.created.to_string());
        let role = match t.role {
            Role::Admin => "admin",
            Role::Readonly => "readonly",
        };
        println!("{:<14}{role:<10}{created:<22}{}", t.id, t.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (from `plumb token list`) or its name.
    which: String,
}

/// Revoke one token; a running agent trusts a token it verified for at most
/// 5 seconds, so it is refused within that.
pub fn token_revoke(data_dir: &Path, args: TokenRevokeArgs) -> miette::Result<ExitCode> {
    let store = Store::open(data_dir).into_diagnostic()?;
    match store.revoke_token(&args.which).into_diagnostic()? {
        Ok(t) => {
            let left = store.tokens().into_diagnostic()?;
            println!(
                "revoked token {} ({}); a running agent refuses it within 5 seconds",
                t.id, t.name
            );
            if !left.iter().any(|t| t.role == Role::Admin) {
                eprintln!(
                    "warning: no admin token is left; make one with plumb token create --role admin"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => Err(miette::miette!(
            help = "plumb token list shows every token's id and name",
            "{why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
