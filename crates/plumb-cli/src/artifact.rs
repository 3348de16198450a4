//! `plumb artifact push|sign|verify|keygen`: plumb-oci presented on the command line.
//!
//! This module owns what a person at a terminal sees of plumb-oci: the flags,
//! the progress bar of a push, the output for people and for scripts, and the
//! errors with a hint saying what to do next. It is also where the process's
//! environment is read (registry credentials, `COSIGN_PASSWORD`,
//! `SOURCE_DATE_EPOCH`, the current directory) and handed to the library as
//! plain values, so that plumb-oci itself never reads process-wide state.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use plumb_oci::artifact::{
    ArtifactError, ArtifactPlan, ArtifactSpec, DEFAULT_ARTIFACT_TYPE, PushProgress, PushStep,
};
use plumb_oci::client::{ClientError, ClientOptions, Credentials, RegistryClient};
use plumb_oci::cosign::{CosignPublicKey, CosignSigningKey, KeyError};
use plumb_oci::reference::{Reference, ReferenceError, parse_repository_ref};
use plumb_oci::signing::{SignatureFormat, SigningError, sign, verify};

use crate::gitops::Output;

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

/// The flags every command that talks to a registry ends with.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// A signature format as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// A Sigstore bundle referrer (cosign v3's default).
    Bundle,
    /// A simple-signing layer on the `sha256-<hex>.sig` tag (cosign's classic format).
    Tag,
    /// Both.
    Both,
}

impl From<FormatArg> for SignatureFormat {
    fn from(f: FormatArg) -> SignatureFormat {
        match f {
            FormatArg::Bundle => SignatureFormat::Bundle,
            FormatArg::Tag => SignatureFormat::Tag,
            FormatArg::Both => SignatureFormat::Both,
        }
    }
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
        /// How to reach the registry, and the output format.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Sign the manifest REF points at with a cosign key (password from COSIGN_PASSWORD).
    Sign {
        /// Cosign private key file (cosign generate-key-pair).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// HOST/REPO:TAG or HOST/REPO@DIGEST.
        reference: String,
        /// Signature format: a Sigstore bundle referrer, the sha256-<hex>.sig tag, or both.
        #[arg(long, value_enum, default_value_t = FormatArg::Both)]
        format: FormatArg,
        /// How to reach the registry, and the output format.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Verify the cosign signatures on REF against a public key; fails when none verifies.
    Verify {
        /// Cosign public key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// HOST/REPO:TAG or HOST/REPO@DIGEST.
        reference: String,
        /// Which signature formats to look for.
        #[arg(long, value_enum, default_value_t = FormatArg::Both)]
        format: FormatArg,
        /// How to reach the registry, and the output format.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write a cosign-compatible key pair (PREFIX.key encrypted with COSIGN_PASSWORD, PREFIX.pub).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "cosign")]
        output_prefix: PathBuf,
    },
    /// List the packages in an image or a directory (CycloneDX 1.6, SPDX 2.3 or plumb's JSON).
    Sbom(crate::scan::sbom::SbomArgs),
    /// Match an image's or a directory's packages (or an SBOM's) against the imported OSV
    /// advisories; exit 1 when a finding is at or above --fail-on, 2 on errors.
    Scan(crate::scan::findings::ScanArgs),
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
    /// `plumb artifact sbom` failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sbom(#[from] crate::scan::sbom::SbomCommandError),
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

impl ArtifactCommandError {
    /// A key file that could not be used, with what to do about it.
    fn key(path: &std::path::Path, cause: KeyError, hint: &str) -> Self {
        ArtifactCommandError::Key {
            path: path.to_owned(),
            cause,
            hint: hint.into(),
        }
    }

    /// A local file or directory that could not be read or written.
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ArtifactCommandError::Io { path, source }
    }
}

/// Credentials for `registry` from this process's environment (see
/// [`Credentials::from_environment`]).
pub fn credentials(registry: &str) -> Option<Credentials> {
    Credentials::from_environment(registry, |name| std::env::var_os(name))
}

fn client_for(registry: &str, args: &RegistryArgs) -> Result<RegistryClient, ArtifactCommandError> {
    Ok(RegistryClient::new(ClientOptions {
        plain_http: args.plain_http.then_some(true),
        credentials: credentials(registry),
        ca_file: args.ca_file.clone(),
    })?)
}

fn read(path: &PathBuf) -> Result<String, ArtifactCommandError> {
    std::fs::read_to_string(path).map_err(ArtifactCommandError::io(path))
}

/// Print `v` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The key password cosign reads: `COSIGN_PASSWORD`, empty when unset.
fn cosign_password() -> Vec<u8> {
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

/// Run an artifact command; its failures come back as reports with hints.
pub async fn run(data_dir: &Path, command: ArtifactCommand) -> miette::Result<ExitCode> {
    match command {
        ArtifactCommand::Scan(args) => crate::scan::findings::run(data_dir, args).await,
        other => {
            execute(other).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn execute(command: ArtifactCommand) -> Result<(), ArtifactCommandError> {
    match command {
        // `run` hands scans to crate::scan before this point.
        ArtifactCommand::Scan(_) => Ok(()),
        ArtifactCommand::Push {
            paths,
            repo,
            artifact_type,
            source,
            dry_run,
            remote,
        } => push(paths, &repo, artifact_type, source, dry_run, remote).await,
        ArtifactCommand::Sign {
            key,
            reference,
            format,
            remote,
        } => {
            let reference: Reference = reference.parse()?;
            let text = read(&key)?;
            let signing_key =
                CosignSigningKey::from_pem(&text, &cosign_password()).map_err(|cause| {
                    let hint = match cause {
                        KeyError::WrongPassword => "export COSIGN_PASSWORD with the key's password",
                        _ => {
                            "use a key written by `cosign generate-key-pair` or `plumb artifact keygen`"
                        }
                    };
                    ArtifactCommandError::key(&key, cause, hint)
                })?;
            let client = client_for(&reference.registry, &remote.registry)?;
            let created = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            let report = sign(&client, &reference, &signing_key, format.into(), created).await?;
            match remote.output {
                Output::Json => print_json(&report),
                Output::Text => {
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
            remote,
        } => {
            let parsed: Reference = reference.parse()?;
            let text = read(&key)?;
            let public = CosignPublicKey::from_pem(&text).map_err(|cause| {
                ArtifactCommandError::key(
                    &key,
                    cause,
                    "pass the PUBLIC KEY file (cosign.pub), not the private key",
                )
            })?;
            let client = client_for(&parsed.registry, &remote.registry)?;
            let report = verify(&client, &parsed, &public, format.into()).await?;
            if remote.output == Output::Json {
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
            if remote.output == Output::Text {
                for v in &report.verified {
                    println!(
                        "verified {} ({:?} signature in {})",
                        report.digest, v.format, v.carrier
                    );
                }
            }
            Ok(())
        }
        ArtifactCommand::Keygen { output_prefix } => keygen(&output_prefix),
        ArtifactCommand::Sbom(args) => Ok(crate::scan::sbom::execute(args).await?),
    }
}

async fn push(
    paths: Vec<PathBuf>,
    repo: &str,
    artifact_type: String,
    source: Option<String>,
    dry_run: bool,
    remote: RemoteArgs,
) -> Result<(), ArtifactCommandError> {
    let (host, repository) = parse_repository_ref(repo)?;
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let spec = ArtifactSpec {
        paths,
        artifact_type,
        source,
        git_dir: std::env::current_dir().map_err(ArtifactCommandError::io("."))?,
        source_date_epoch: ArtifactSpec::parse_source_date_epoch(epoch.as_deref())?,
    };
    let plan = tokio::task::spawn_blocking(move || ArtifactPlan::prepare(&spec))
        .await
        .map_err(|e| ArtifactCommandError::io("<pack>")(std::io::Error::other(e)))??;
    if !dry_run {
        let client = client_for(&host, &remote.registry)?;
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| Arc::new(PushBar::new(plan.layer_bytes())));
        let progress: Arc<dyn PushProgress> = match &bar {
            Some(bar) => bar.clone(),
            None => Arc::new(()),
        };
        plan.push(&client, &host, &repository, progress).await?;
        if let Some(bar) = bar {
            bar.0.finish_and_clear();
        }
    }
    let tags: Vec<String> = plan.tags.iter().map(|t| t.to_string()).collect();
    match remote.output {
        Output::Json => print_json(&serde_json::json!({
            "digest": plan.digest,
            "repository": format!("{host}/{repository}"),
            "tags": tags,
            "revision": plan.commit.revision,
            "pushed": !dry_run,
        })),
        Output::Text => println!("{}", plan.digest),
    }
    Ok(())
}

/// Write PREFIX.key (encrypted with `COSIGN_PASSWORD`, mode 0600, never
/// over an existing file) and PREFIX.pub.
fn keygen(output_prefix: &std::path::Path) -> Result<(), ArtifactCommandError> {
    let key = CosignSigningKey::generate()
        .map_err(|cause| ArtifactCommandError::key(output_prefix, cause, "retry"))?;
    let key_path = output_prefix.with_extension("key");
    let pub_path = output_prefix.with_extension("pub");
    let private = key
        .to_encrypted_pem(&cosign_password())
        .map_err(|cause| ArtifactCommandError::key(&key_path, cause, "retry"))?;
    let public = key
        .public_key()
        .to_pem()
        .map_err(|cause| ArtifactCommandError::key(&pub_path, cause, "retry"))?;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(ArtifactCommandError::io(&key_path))?;
        f.write_all(private.as_bytes())
            .map_err(ArtifactCommandError::io(&key_path))?;
    }
    std::fs::write(&pub_path, public).map_err(ArtifactCommandError::io(&pub_path))?;
    println!("wrote {} and {}", key_path.display(), pub_path.display());
    Ok(())
}
