//! `plumb registry serve|gc`: the command-line surface of this crate.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ConfigError, RegistryConfig};
use crate::server::{ServeError, serve, tls_config};
use crate::service::{OpenError, Registry};

/// Run and maintain plumb's OCI registry.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API, storing everything under --root.
    #[command(after_long_help = CONFIG_HELP)]
    Serve(ServeArgs),
    /// Apply retention and collect unreferenced content now: in a running
    /// registry (--url) or in a stopped one's --root.
    Gc(GcArgs),
    /// Print an htpasswd line (bcrypt) for USER, reading the password from stdin.
    Htpasswd {
        /// The user name.
        user: String,
    },
}

/// The configuration file's format, shown by `plumb registry serve --help`.
const CONFIG_HELP: &str = "\
Configuration file (--config, YAML; every key optional):

  auth:
    htpasswd: users.htpasswd        # bcrypt entries (plumb registry htpasswd USER)
    anonymous_pull: false
    roles: { deploy: read }         # read or push; users not listed get default_role
    default_role: push
  limits:
    max_manifest_bytes: 4194304
  immutable_tags: ['^[0-9a-f]{40}$', '^v[0-9]+\\.[0-9]+\\.[0-9]+$']
  repositories:                     # first match wins; * within a path component, ** across
    - match: \"team/**\"
      forbid_latest: true
      retention: { keep_last: 10, keep_tags: '^v', keep_within: 30d }
  gc:
    interval: 1h                    # online GC; 0 or absent: off
    grace: 1h                       # new, unreferenced content is safe this long
  tls: { cert: server.pem, key: server-key.pem }
  storage:
    fsync: true                     # false: acknowledge blobs from the page cache

Relative paths are relative to the configuration file.";

/// `plumb registry serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Directory holding blobs and metadata.
    #[arg(long)]
    pub root: PathBuf,
    /// htpasswd file (bcrypt entries) of users who may push and pull.
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// Configuration file (YAML): roles, tag policy, retention, GC, TLS.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key serves HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve without credentials (anyone may push). Refused unless --listen is a loopback address.
    #[arg(long)]
    pub no_auth: bool,
}

/// `plumb registry gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Directory holding blobs and metadata (the registry must be stopped).
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    pub root: Option<PathBuf>,
    /// A running plumb registry (e.g. http://127.0.0.1:5000); credentials of a
    /// push user from PLUMB_REGISTRY_USERNAME/PLUMB_REGISTRY_PASSWORD.
    #[arg(long)]
    pub url: Option<String>,
    /// Configuration file (retention policies, grace window).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// List what would be removed without removing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: plumb_oci::cli::OutputFormat,
}

/// Ask a running registry to collect now.
async fn remote_gc(url: &str, dry_run: bool) -> Result<crate::gc::GcReport, RegistryCommandError> {
    let fail = |m: String| RegistryCommandError::Remote(m);
    let registry = url
        .trim_end_matches('/')
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(url);
    let client = plumb_oci::client::RegistryClient::new(plumb_oci::client::ClientOptions {
        plain_http: Some(url.starts_with("http://")),
        credentials: plumb_oci::client::Credentials::from_environment(registry, |name| {
            std::env::var_os(name)
        }),
        ca_file: None,
    })
    .map_err(|e| fail(e.to_string()))?;
    let v = client
        .post_extension(
            registry,
            crate::http::GC_PATH,
            &[("dry_run", if dry_run { "true" } else { "false" })],
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| fail(format!("unexpected GC report: {e}")))
}

/// A failed `plumb registry` command.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RegistryCommandError {
    /// Configuration.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    /// Opening the store.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Open(#[from] OpenError),
    /// Serving.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Serve(#[from] ServeError),
    /// Refused to run an open registry.
    #[error("refusing to serve without credentials")]
    #[diagnostic(code(plumb::registry::auth), help("{0}"))]
    NoCredentials(String),
    /// A running registry refused or failed.
    #[error("{0}")]
    #[diagnostic(
        code(plumb::registry::remote),
        help(
            "check --url, and that PLUMB_REGISTRY_USERNAME/PLUMB_REGISTRY_PASSWORD name a user with the push role"
        )
    )]
    Remote(String),
    /// GC failure.
    #[error("garbage collection failed: {0}")]
    #[diagnostic(code(plumb::registry::gc))]
    Gc(#[from] crate::error::RegistryError),
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryCommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryCommandError::Serve(ServeError::Io(e)))
}

fn load_config(path: Option<&PathBuf>) -> Result<RegistryConfig, ConfigError> {
    match path {
        Some(p) => RegistryConfig::load(p),
        None => Ok(RegistryConfig::default()),
    }
}

/// Run a registry command to completion.
pub fn run(command: RegistryCommand) -> Result<(), RegistryCommandError> {
    match command {
        RegistryCommand::Serve(args) => {
            let mut config = load_config(args.config.as_ref())?;
            if let Some(h) = args.htpasswd {
                config.htpasswd = Some(h);
            }
            if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
                config.tls = Some((c, k));
            }
            let addr: SocketAddr = args.listen.parse().map_err(|e| {
                RegistryCommandError::Serve(ServeError::Bind {
                    addr: args.listen.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })
            })?;
            if config.htpasswd.is_none() {
                if !args.no_auth {
                    return Err(RegistryCommandError::NoCredentials(
                        "give --htpasswd FILE (bcrypt entries, e.g. `htpasswd -Bbn user pass`), or --no-auth for a loopback-only open registry".into(),
                    ));
                }
                if !addr.ip().is_loopback() {
                    return Err(RegistryCommandError::NoCredentials(format!(
                        "--no-auth is only allowed on a loopback address, not {addr}: give --htpasswd FILE"
                    )));
                }
            }
            let tls = config
                .tls
                .as_ref()
                .map(|(c, k)| tls_config(c, k))
                .transpose()?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let registry = Arc::new(Registry::open(&args.root, config)?);
            runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?;
                let local = listener.local_addr().map_err(ServeError::Io)?;
                println!("plumb registry listening on {scheme}://{local}");
                tracing::info!(%local, root = %args.root.display(), "registry serving");
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                serve(listener, registry, tls, shutdown).await?;
                Ok(())
            })
        }
        RegistryCommand::Htpasswd { user } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| RegistryCommandError::Serve(ServeError::Io(e)))?;
            let password = password.trim_end_matches(['\n', '\r']);
            if user.contains(':') || password.is_empty() {
                return Err(RegistryCommandError::NoCredentials(
                    "give a user name without ':' and a non-empty password on stdin".into(),
                ));
            }
            let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST).map_err(|e| {
                RegistryCommandError::Serve(ServeError::Io(std::io::Error::other(e)))
            })?;
            // htpasswd -B writes the $2y$ prefix; the hash is the same algorithm.
            println!("{user}:{}", hash.replacen("$2b$", "$2y$", 1));
            Ok(())
        }
        RegistryCommand::Gc(args) => {
            let report = match (&args.url, &args.root) {
                (Some(url), _) => runtime()?.block_on(remote_gc(url, args.dry_run))?,
                (None, Some(root)) => {
                    let config = load_config(args.config.as_ref())?;
                    let registry = Registry::open(root, config)?;
                    runtime()?.block_on(crate::gc::collect(&registry, args.dry_run))?
                }
                (None, None) => {
                    return Err(RegistryCommandError::NoCredentials(
                        "give --root DIR or --url URL".into(),
                    ));
                }
            };
            if args.output == plumb_oci::cli::OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                let verb = if report.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                for t in &report.tags {
                    println!("{verb} tag {t}");
                }
                for m in &report.manifests {
                    println!("{verb} manifest {m}");
                }
                for b in &report.blobs {
                    println!("{verb} blob {b}");
                }
                if std::io::stderr().is_terminal() || !report.dry_run {
                    eprintln!(
                        "{verb} {} tags, {} manifests, {} blobs ({} bytes)",
                        report.tags.len(),
                        report.manifests.len(),
                        report.blobs.len(),
                        report.bytes_freed
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(listen: &str, htpasswd: Option<PathBuf>, no_auth: bool) -> RegistryCommand {
        RegistryCommand::Serve(ServeArgs {
            listen: listen.into(),
            root: std::env::temp_dir().join("plumb-registry-cli-test-never-created"),
            htpasswd,
            config: None,
            tls_cert: None,
            tls_key: None,
            no_auth,
        })
    }

    #[test]
    fn the_configuration_shown_in_help_parses() {
        let yaml: String = CONFIG_HELP
            .lines()
            .skip_while(|l| !l.starts_with("  auth:"))
            .take_while(|l| !l.starts_with("Relative"))
            .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
            .collect();
        let c =
            RegistryConfig::parse(&yaml, std::path::Path::new("/etc/plumb/registry.yaml")).unwrap();
        assert_eq!(c.gc_interval, Some(std::time::Duration::from_secs(3600)));
        assert!(c.rule_for("team/a/b").is_some_and(|r| r.forbid_latest));
        assert!(c.tag_policy.immutable_by("v1.2.3").is_some());
    }

    #[test]
    fn refuses_to_serve_writes_without_credentials() {
        let e = run(serve("127.0.0.1:0", None, false)).unwrap_err();
        assert!(matches!(e, RegistryCommandError::NoCredentials(_)), "{e:?}");
        let e = run(serve("0.0.0.0:0", None, true)).unwrap_err();
        assert!(
            matches!(&e, RegistryCommandError::NoCredentials(m) if m.contains("loopback")),
            "{e:?}"
        );
    }

    #[test]
    fn a_bad_config_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("registry.yaml");
        std::fs::write(&cfg, "gc:\n  grace: soon\n").unwrap();
        let e = run(RegistryCommand::Gc(GcArgs {
            root: Some(dir.path().join("root")),
            url: None,
            config: Some(cfg),
            dry_run: true,
            output: Default::default(),
        }))
        .unwrap_err();
        assert!(e.to_string().contains("registry.yaml"), "{e}");
        assert!(!dir.path().join("root").exists(), "nothing was created");
    }
}
