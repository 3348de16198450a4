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
    Serve(ServeArgs),
    /// Apply retention and collect unreferenced content (registry stopped; a
    /// running registry collects online every gc.interval).
    Gc(GcArgs),
    /// Print an htpasswd line (bcrypt) for USER, reading the password from stdin.
    Htpasswd {
        /// The user name.
        user: String,
    },
}

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
    /// Directory holding blobs and metadata.
    #[arg(long)]
    pub root: PathBuf,
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
            let config = load_config(args.config.as_ref())?;
            let registry = Registry::open(&args.root, config)?;
            let report = runtime()?.block_on(crate::gc::collect(&registry, args.dry_run))?;
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
            root: dir.path().join("root"),
            config: Some(cfg),
            dry_run: true,
            output: Default::default(),
        }))
        .unwrap_err();
        assert!(e.to_string().contains("registry.yaml"), "{e}");
        assert!(!dir.path().join("root").exists(), "nothing was created");
    }
}
