//! `plumb registry serve|gc|htpasswd`: plumb-registry presented on the command line.
//!
//! This module owns the registry's flags and its configuration help, the
//! safety checks made before serving (no open registry off loopback), the
//! output of a GC run, and the errors with their hints. The registry itself,
//! its storage, policies and collection are plumb-registry's; this module
//! only turns arguments into the values those take, and reads the process's
//! environment (the credentials of `gc --url`) on the library's behalf.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use plumb_oci::client::{ClientError, ClientOptions, RegistryClient};
use plumb_registry::auth::{EntryError, HtpasswdError};
use plumb_registry::config::{ConfigError, RegistryConfig};
use plumb_registry::gc::GcReport;
use plumb_registry::server::{ServeError, serve, tls_config};
use plumb_registry::service::{OpenError, Registry};
use plumb_registry::{RegistryError, auth, gc};

use crate::artifact::{credentials, print_json};
use crate::gitops::Output;

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
    scheme: basic                   # basic | token (Bearer tokens from /token) | both
    token:                          # with token or both
      service: plumb-registry       # the challenges' service and the tokens' audience
      expiry: 5m
      # key: token-key.pem          # P-256 PEM; default ROOT/token/key.pem, made on first start
      # realm: https://registry.example/token   # default: /token where the client connected
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
  proxy:                            # pull-through caches (read-only mirrors)
    - prefix: dockerhub             # dockerhub/library/alpine -> upstream library/alpine
      upstream: https://registry-1.docker.io
      tag_ttl: 5m                   # a cached tag is re-checked upstream this often
      credentials: { username: me, password_file: hub-token }
  quotas:                           # blob and manifest bytes per repository prefix
    - { prefix: team-a/, max_bytes: 10GiB }

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
    pub output: Output,
}

/// A failed `plumb registry` command.
///
/// The library's errors are shown as they are, with the code and hint this
/// command line gives each of them ([`miette::Diagnostic`] below).
#[derive(Debug, thiserror::Error)]
pub enum RegistryCommandError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Opening the store.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Serving.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Refused to run an open registry.
    #[error("refusing to serve without credentials")]
    NoCredentials(String),
    /// A running registry could not be reached, or refused.
    #[error("{cause}")]
    Remote {
        /// Why.
        cause: ClientError,
    },
    /// A running registry answered with something other than a GC report.
    #[error("unexpected GC report: {0}")]
    RemoteReport(serde_json::Error),
    /// GC failure.
    #[error("garbage collection failed: {0}")]
    Gc(#[from] RegistryError),
    /// Scanning could not start.
    #[error("cannot scan pushed images: {0}")]
    Scan(String),
}

impl miette::Diagnostic for RegistryCommandError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        use RegistryCommandError as E;
        let code = match self {
            E::Config(_) => "plumb::registry::config",
            E::Open(OpenError::Storage { .. }) => "plumb::registry::open",
            E::Open(OpenError::Htpasswd(_)) => "plumb::registry::htpasswd",
            E::Open(OpenError::TokenKey(_)) => "plumb::registry::token",
            E::Open(OpenError::Proxy(_)) => "plumb::registry::proxy",
            E::Serve(ServeError::Bind { .. }) => "plumb::registry::listen",
            E::Serve(ServeError::Tls(_)) => "plumb::registry::tls",
            E::Serve(ServeError::Io(_)) => return None,
            E::NoCredentials(_) => "plumb::registry::auth",
            E::Remote { .. } | E::RemoteReport(_) => "plumb::registry::remote",
            E::Gc(_) => "plumb::registry::gc",
            E::Scan(_) => "plumb::registry::scan",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        use RegistryCommandError as E;
        let help: String = match self {
            E::Config(ConfigError::Parse { .. }) => {
                "see `plumb registry serve --help` for the configuration format".into()
            }
            E::Open(OpenError::Storage { cause, .. }) => open_hint(cause).into(),
            E::Open(OpenError::Htpasswd(HtpasswdError::NotBcrypt { .. })) => {
                "create entries with `htpasswd -B` (bcrypt); MD5, SHA and crypt entries are not accepted".into()
            }
            E::Open(OpenError::TokenKey(_)) => {
                "auth.token.key must be a P-256 private key in PKCS#8 PEM (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`), or leave it out to have one made under --root".into()
            }
            E::Open(OpenError::Proxy(_)) => {
                "check the proxy entry's credentials and ca files".into()
            }
            E::Serve(ServeError::Bind { .. }) => {
                "pick a free address with --listen, e.g. 127.0.0.1:5000".into()
            }
            E::Serve(ServeError::Tls(_)) => {
                "give a PEM certificate chain and its PEM private key".into()
            }
            E::NoCredentials(what) => what.clone(),
            E::Scan(_) => {
                "import advisories with `plumb advisories import PATH --data-dir DIR` and name DIR/advisories in scan.advisories; a sign_key is unlocked by COSIGN_PASSWORD".into()
            }
            E::Remote { .. } | E::RemoteReport(_) => {
                "check --url, and that PLUMB_REGISTRY_USERNAME/PLUMB_REGISTRY_PASSWORD name a user with the push role".into()
            }
            _ => return None,
        };
        Some(Box::new(help))
    }
}

/// What to do when the registry's storage cannot be opened.
fn open_hint(cause: &RegistryError) -> &'static str {
    let text = cause.to_string();
    if text.contains("already open") || text.contains("lock") {
        "a running plumb registry holds this root: stop it first (a running registry \
         collects garbage online every gc.interval of its --config)"
    } else {
        "check that the directory is writable"
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<RegistryConfig, ConfigError> {
    match path {
        Some(p) => RegistryConfig::load(p),
        None => Ok(RegistryConfig::default()),
    }
}

/// Run a registry command; its failures come back as reports with hints.
pub async fn run(command: RegistryCommand) -> miette::Result<ExitCode> {
    execute(command).await?;
    Ok(ExitCode::SUCCESS)
}

async fn execute(command: RegistryCommand) -> Result<(), RegistryCommandError> {
    match command {
        RegistryCommand::Serve(args) => serve_command(args).await,
        RegistryCommand::Htpasswd { user } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(ServeError::Io)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let line = auth::htpasswd_entry(&user, password).map_err(|e| match e {
                EntryError::Invalid => RegistryCommandError::NoCredentials(
                    "give a user name without ':' and a non-empty password on stdin".into(),
                ),
                EntryError::Hash(e) => ServeError::Io(std::io::Error::other(e)).into(),
            })?;
            println!("{line}");
            Ok(())
        }
        RegistryCommand::Gc(args) => {
            let report = match (&args.url, &args.root) {
                (Some(url), _) => remote_gc(url, args.dry_run).await?,
                (None, Some(root)) => {
                    let config = load_config(args.config.as_ref())?;
                    let registry = Registry::open(root, config)?;
                    gc::collect(&registry, args.dry_run).await?
                }
                (None, None) => {
                    return Err(RegistryCommandError::NoCredentials(
                        "give --root DIR or --url URL".into(),
                    ));
                }
            };
            print_gc_report(&report, args.output);
            Ok(())
        }
    }
}

async fn serve_command(args: ServeArgs) -> Result<(), RegistryCommandError> {
    let mut config = load_config(args.config.as_ref())?;
    if let Some(h) = args.htpasswd {
        config.htpasswd = Some(h);
    }
    if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
        config.tls = Some((c, k));
    }
    let addr: SocketAddr = args.listen.parse().map_err(|e| ServeError::Bind {
        addr: args.listen.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
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
    let scan_config = config.clone();
    let registry = Arc::new(Registry::open(&args.root, config)?);
    crate::scan::registry::start(&registry, &scan_config).map_err(RegistryCommandError::Scan)?;
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
}

/// Ask the running registry at `url` to collect now, as the push user the
/// environment names.
async fn remote_gc(url: &str, dry_run: bool) -> Result<GcReport, RegistryCommandError> {
    let remote = |cause| RegistryCommandError::Remote { cause };
    let registry = url
        .trim_end_matches('/')
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(url);
    let client = RegistryClient::new(ClientOptions {
        plain_http: Some(url.starts_with("http://")),
        credentials: credentials(registry),
        ca_file: None,
    })
    .map_err(remote)?;
    let v = client
        .post_extension(
            registry,
            plumb_registry::http::GC_PATH,
            &[("dry_run", if dry_run { "true" } else { "false" })],
        )
        .await
        .map_err(remote)?;
    serde_json::from_value(v).map_err(RegistryCommandError::RemoteReport)
}

fn print_gc_report(report: &GcReport, output: Output) {
    if output == Output::Json {
        print_json(report);
        return;
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (kind, names) in [
        ("tag", &report.tags),
        ("manifest", &report.manifests),
        ("blob", &report.blobs),
    ] {
        for name in names {
            println!("{verb} {kind} {name}");
        }
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
        assert!(c.auth_scheme == plumb_registry::config::AuthScheme::Basic);
        assert!(c.proxy_for("dockerhub/library/alpine").is_some());
        assert_eq!(c.quotas[0].max_bytes, 10 << 30);
    }

    #[tokio::test]
    async fn refuses_to_serve_writes_without_credentials() {
        let e = execute(serve("127.0.0.1:0", None, false))
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryCommandError::NoCredentials(_)), "{e:?}");
        let e = execute(serve("0.0.0.0:0", None, true)).await.unwrap_err();
        assert!(
            matches!(&e, RegistryCommandError::NoCredentials(m) if m.contains("loopback")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_bad_config_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("registry.yaml");
        std::fs::write(&cfg, "gc:\n  grace: soon\n").unwrap();
        let e = execute(RegistryCommand::Gc(GcArgs {
            root: Some(dir.path().join("root")),
            url: None,
            config: Some(cfg),
            dry_run: true,
            output: Default::default(),
        }))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("registry.yaml"), "{e}");
        assert!(!dir.path().join("root").exists(), "nothing was created");
    }
}
