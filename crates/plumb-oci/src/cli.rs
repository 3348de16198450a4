//! `plumb artifact push|sign|verify|keygen`: the command-line surface of this crate.
//!
//! plumb-cli only wires [`ArtifactCommand`] in; argument definitions, the
//! runtime and the error presentation (with hints) live here.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use crate::artifact::{
    ArtifactError, ArtifactPlan, ArtifactSpec, DEFAULT_ARTIFACT_TYPE, PushProgress, PushStep,
};
use crate::client::{ClientError, ClientOptions, Credentials, RegistryClient};
use crate::cosign::{CosignPublicKey, CosignSigningKey, KeyError};
use crate::reference::{Reference, ReferenceError, parse_repository_ref};
use crate::signing::{SignatureFormat, SigningError, sign, verify};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// For scripts.
    Json,
}

/// How to reach the registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Use plain HTTP (default: only for loopback registries).
    #[arg(long)]
    pub plain_http: bool,
    /// Extra CA certificate (PEM) to trust for HTTPS.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Push, sign and verify artifacts in any OCI registry.
#[derive(Debug, clap::Subcommand)]
pub enum ArtifactCommand {
    /// Push files or directories as an OCI artifact tagged with the current git commit SHA
    /// (and vX.Y.Z when HEAD carries that tag); prints the manifest digest.
    Push {
        /// Files and directories to include (a directory becomes one tar.gz layer).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where to push: HOST[:PORT]/REPOSITORY.
        #[arg(long, value_name = "HOST/REPO")]
        repo: String,
        /// The artifact's artifactType.
        #[arg(long, default_value = DEFAULT_ARTIFACT_TYPE)]
        artifact_type: String,
        /// org.opencontainers.image.source (default: git remote origin URL).
        #[arg(long)]
        source: Option<String>,
        /// Build the manifest and print its digest without pushing.
        #[arg(long)]
        dry_run: bool,
        /// How to reach the registry.
        #[command(flatten)]
        registry: RegistryArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Sign the manifest REF points at with a cosign key (password from COSIGN_PASSWORD).
    Sign {
        /// Cosign private key file (cosign generate-key-pair).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// HOST/REPO:TAG or HOST/REPO@DIGEST.
        reference: String,
        /// Signature format: a Sigstore bundle referrer, the sha256-<hex>.sig tag, or both.
        #[arg(long, value_enum, default_value_t = SignatureFormat::Both)]
        format: SignatureFormat,
        /// How to reach the registry.
        #[command(flatten)]
        registry: RegistryArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Verify the cosign signatures on REF against a public key; fails when none verifies.
    Verify {
        /// Cosign public key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// HOST/REPO:TAG or HOST/REPO@DIGEST.
        reference: String,
        /// Which signature formats to look for.
        #[arg(long, value_enum, default_value_t = SignatureFormat::Both)]
        format: SignatureFormat,
        /// How to reach the registry.
        #[command(flatten)]
        registry: RegistryArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Write a cosign-compatible key pair (PREFIX.key encrypted with COSIGN_PASSWORD, PREFIX.pub).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "cosign")]
        output_prefix: PathBuf,
    },
}

/// A failed `plumb artifact` command.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ArtifactCommandError {
    /// Bad reference.
    #[error(transparent)]
    #[diagnostic(
        code(plumb::artifact::reference),
        help("write references as HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")
    )]
    Reference(#[from] ReferenceError),
    /// Key trouble.
    #[error("{path}: {cause}")]
    #[diagnostic(code(plumb::artifact::key), help("{hint}"))]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        cause: KeyError,
        /// What to do.
        hint: String,
    },
    /// Registry trouble.
    #[error("{cause}")]
    #[diagnostic(code(plumb::artifact::registry), help("{hint}"))]
    Client {
        /// Why.
        cause: ClientError,
        /// What to do.
        hint: String,
    },
    /// Packaging trouble.
    #[error(transparent)]
    #[diagnostic(
        code(plumb::artifact::package),
        help("push from inside a git work tree, with paths that exist")
    )]
    Artifact(ArtifactError),
    /// Signing trouble.
    #[error(transparent)]
    #[diagnostic(code(plumb::artifact::sign))]
    Signing(SigningError),
    /// No signature verified.
    #[error(
        "no signature on {reference} ({digest}) verifies with {key}: {rejected} signature(s) found, none by this key"
    )]
    #[diagnostic(
        code(plumb::artifact::unverified),
        help(
            "check that the key matches the one used to sign, and that the reference is the signed digest"
        )
    )]
    Unverified {
        /// What was checked.
        reference: String,
        /// The resolved digest.
        digest: String,
        /// The key file.
        key: PathBuf,
        /// How many signatures did not verify.
        rejected: usize,
    },
    /// Local I/O.
    #[error("{path}: {source}")]
    #[diagnostic(code(plumb::artifact::io))]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn client_hint(e: &ClientError) -> String {
    match e {
        ClientError::Unauthorized { .. } => {
            "set PLUMB_REGISTRY_USERNAME and PLUMB_REGISTRY_PASSWORD".into()
        }
        ClientError::Http(_) => {
            "check that the registry is running and reachable; for HTTP use --plain-http".into()
        }
        ClientError::Status { status: 409, .. } => {
            "the tag is immutable under the registry's policy: push a new tag instead".into()
        }
        _ => "see the registry's error above".into(),
    }
}

impl From<ClientError> for ArtifactCommandError {
    fn from(cause: ClientError) -> Self {
        let hint = client_hint(&cause);
        ArtifactCommandError::Client { cause, hint }
    }
}

impl From<SigningError> for ArtifactCommandError {
    fn from(e: SigningError) -> Self {
        match e {
            SigningError::Client(c) => c.into(),
            other => ArtifactCommandError::Signing(other),
        }
    }
}

impl From<ArtifactError> for ArtifactCommandError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::Client(c) => c.into(),
            other => ArtifactCommandError::Artifact(other),
        }
    }
}

fn client_for(registry: &str, args: &RegistryArgs) -> Result<RegistryClient, ArtifactCommandError> {
    Ok(RegistryClient::new(ClientOptions {
        plain_http: args.plain_http.then_some(true),
        credentials: Credentials::from_environment(registry, |name| std::env::var_os(name)),
        ca_file: args.ca_file.clone(),
    })?)
}

fn read(path: &PathBuf) -> Result<String, ArtifactCommandError> {
    std::fs::read_to_string(path).map_err(|source| ArtifactCommandError::Io {
        path: path.clone(),
        source,
    })
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn password() -> Vec<u8> {
    std::env::var("COSIGN_PASSWORD")
        .unwrap_or_default()
        .into_bytes()
}

/// A push drawn as a progress bar on stderr.
struct PushBar(indicatif::ProgressBar);

impl PushBar {
    fn new(total: u64) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        PushBar(bar)
    }
}

impl PushProgress for PushBar {
    fn step(&self, step: PushStep<'_>) {
        self.0.set_message(match step {
            PushStep::Layer {
                title,
                size,
                digest,
            } => format!("pushing {title} ({size} bytes, {digest})"),
            PushStep::Tag(t) => format!("tagging {t}"),
        });
    }

    fn sent(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// Run an artifact command to completion.
pub fn run(command: ArtifactCommand) -> Result<(), ArtifactCommandError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ArtifactCommandError::Io {
            path: PathBuf::from("<runtime>"),
            source,
        })?;
    rt.block_on(run_async(command))
}

async fn run_async(command: ArtifactCommand) -> Result<(), ArtifactCommandError> {
    let tty = std::io::stderr().is_terminal();
    match command {
        ArtifactCommand::Push {
            paths,
            repo,
            artifact_type,
            source,
            dry_run,
            registry,
            output,
        } => {
            let (host, repository) = parse_repository_ref(&repo)?;
            let spec = ArtifactSpec {
                paths,
                artifact_type,
                source,
                git_dir: std::env::current_dir().map_err(|source| ArtifactCommandError::Io {
                    path: PathBuf::from("."),
                    source,
                })?,
                source_date_epoch: ArtifactSpec::parse_source_date_epoch(
                    std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
                )?,
            };
            let plan = tokio::task::spawn_blocking(move || ArtifactPlan::prepare(&spec))
                .await
                .map_err(|e| ArtifactCommandError::Io {
                    path: PathBuf::from("<pack>"),
                    source: std::io::Error::other(e),
                })??;
            if !dry_run {
                let client = client_for(&host, &registry)?;
                let bar = tty.then(|| std::sync::Arc::new(PushBar::new(plan.layer_bytes())));
                let progress: std::sync::Arc<dyn PushProgress> = match &bar {
                    Some(bar) => bar.clone(),
                    None => std::sync::Arc::new(()),
                };
                plan.push(&client, &host, &repository, progress).await?;
                if let Some(bar) = bar {
                    bar.0.finish_and_clear();
                }
            }
            let tags: Vec<String> = plan.tags.iter().map(|t| t.to_string()).collect();
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "digest": plan.digest,
                    "repository": format!("{host}/{repository}"),
                    "tags": tags,
                    "revision": plan.commit.revision,
                    "pushed": !dry_run,
                })),
                OutputFormat::Text => println!("{}", plan.digest),
            }
            Ok(())
        }
        ArtifactCommand::Sign {
            key,
            reference,
            format,
            registry,
            output,
        } => {
            let reference: Reference = reference.parse()?;
            let text = read(&key)?;
            let signing_key = CosignSigningKey::from_pem(&text, &password()).map_err(|source| {
                let hint = match source {
                    KeyError::WrongPassword => {
                        "export COSIGN_PASSWORD with the key's password".into()
                    }
                    _ => {
                        "use a key written by `cosign generate-key-pair` or `plumb artifact keygen`"
                            .into()
                    }
                };
                ArtifactCommandError::Key {
                    path: key.clone(),
                    cause: source,
                    hint,
                }
            })?;
            let client = client_for(&reference.registry, &registry)?;
            let created = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            let report = sign(&client, &reference, &signing_key, format, created).await?;
            match output {
                OutputFormat::Json => print_json(&report),
                OutputFormat::Text => {
                    for s in &report.signatures {
                        println!("signed {} ({:?}: {})", report.digest, s.format, s.location);
                    }
                }
            }
            Ok(())
        }
        ArtifactCommand::Verify {
            key,
            reference,
            format,
            registry,
            output,
        } => {
            let parsed: Reference = reference.parse()?;
            let text = read(&key)?;
            let public =
                CosignPublicKey::from_pem(&text).map_err(|source| ArtifactCommandError::Key {
                    path: key.clone(),
                    cause: source,
                    hint: "pass the PUBLIC KEY file (cosign.pub), not the private key".into(),
                })?;
            let client = client_for(&parsed.registry, &registry)?;
            let report = verify(&client, &parsed, &public, format).await?;
            if output == OutputFormat::Json {
                print_json(&report);
            }
            if report.verified.is_empty() {
                return Err(ArtifactCommandError::Unverified {
                    reference,
                    digest: report.digest.to_string(),
                    key,
                    rejected: report.rejected,
                });
            }
            if output == OutputFormat::Text {
                for v in &report.verified {
                    println!(
                        "verified {} ({:?} signature in {})",
                        report.digest, v.format, v.carrier
                    );
                }
            }
            Ok(())
        }
        ArtifactCommand::Keygen { output_prefix } => {
            let key = CosignSigningKey::generate().map_err(|source| ArtifactCommandError::Key {
                path: output_prefix.clone(),
                cause: source,
                hint: "retry".into(),
            })?;
            let key_path = output_prefix.with_extension("key");
            let pub_path = output_prefix.with_extension("pub");
            let io = |path: &PathBuf| {
                let path = path.clone();
                move |source| ArtifactCommandError::Io { path, source }
            };
            let key_err = |path: &PathBuf| {
                let path = path.clone();
                move |source| ArtifactCommandError::Key {
                    path,
                    cause: source,
                    hint: "retry".into(),
                }
            };
            let private = key
                .to_encrypted_pem(&password())
                .map_err(key_err(&key_path))?;
            let public = key.public_key().to_pem().map_err(key_err(&pub_path))?;
            {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key_path)
                    .map_err(io(&key_path))?;
                f.write_all(private.as_bytes()).map_err(io(&key_path))?;
            }
            std::fs::write(&pub_path, public).map_err(io(&pub_path))?;
            println!("wrote {} and {}", key_path.display(), pub_path.display());
            Ok(())
        }
    }
}
