//! `plumb artifact sbom REF|DIR`: list what an image or a directory holds,
//! as CycloneDX 1.6, SPDX 2.3 or plumb's own JSON.

use std::path::{Path, PathBuf};

use plumb_oci::client::{ClientOptions, RegistryClient};
use plumb_oci::reference::{Reference, ReferenceError};
use plumb_scan::sbom::cyclonedx::to_cyclonedx;
use plumb_scan::sbom::spdx::to_spdx;
use plumb_scan::{Sbom, SbomError};

use crate::artifact::{RegistryArgs, credentials};

/// An SBOM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    #[default]
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
    /// plumb's own list of packages (what `plumb artifact scan` matches).
    Json,
}

/// `plumb artifact sbom`.
#[derive(Debug, Clone, clap::Args)]
pub struct SbomArgs {
    /// An image (HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]) or a directory; an
    /// existing directory wins.
    pub target: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: SbomFormat,
    /// Write to FILE instead of standard output (replaced only on success).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A failed `plumb artifact sbom`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SbomCommandError {
    /// Neither a directory nor an image reference.
    #[error("{target} is neither a directory nor an image reference: {cause}")]
    #[diagnostic(
        code(plumb::sbom::target),
        help("give an existing directory, or HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")
    )]
    Target {
        /// What was given.
        target: String,
        /// Why it is no reference.
        cause: ReferenceError,
    },
    /// The SBOM could not be made.
    #[error("{cause}")]
    #[diagnostic(code(plumb::sbom::read), help("{hint}"))]
    Sbom {
        /// Why.
        cause: Box<SbomError>,
        /// What to do.
        hint: String,
    },
    /// The registry client could not be built.
    #[error(transparent)]
    #[diagnostic(code(plumb::sbom::client), help("check --ca-file"))]
    Client(#[from] plumb_oci::client::ClientError),
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a Unix time in seconds")]
    #[diagnostic(
        code(plumb::sbom::epoch),
        help("unset it, or set it to e.g. 1700000000")
    )]
    Epoch(String),
    /// The output could not be written.
    #[error("cannot write {}: {source}", path.display())]
    #[diagnostic(code(plumb::sbom::write))]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Run `plumb artifact sbom`.
pub async fn execute(args: SbomArgs) -> Result<(), SbomCommandError> {
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
            .ok_or(SbomCommandError::Epoch(s))?,
        Err(_) => jiff::Timestamp::now(),
    };
    let sbom = collect(&args.target, &args.registry).await?;
    let document = match args.format {
        SbomFormat::Cyclonedx => to_cyclonedx(&sbom, created),
        SbomFormat::Spdx => to_spdx(&sbom, created),
        SbomFormat::Json => serde_json::to_value(&sbom).unwrap_or_default(),
    };
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    match &args.output {
        None => print!("{text}"),
        Some(path) => write_replacing(path, text.as_bytes())?,
    }
    Ok(())
}

/// An SBOM failure with a hint saying what to do; `within` is what the
/// file names in it are relative to.
fn failed(cause: SbomError, within: &str) -> SbomCommandError {
    let hint = match &cause {
        SbomError::Parse { .. } => format!(
            "the file is inside {within}; fix or remove it (nothing was written)"
        ),
        SbomError::Registry { .. } => {
            "check the reference, that the registry is reachable, and its credentials (PLUMB_REGISTRY_USERNAME/PASSWORD)".into()
        }
        SbomError::Image { .. } | SbomError::Layer { .. } => {
            "the image is not one plumb can read; see docs/SCAN.md".into()
        }
        _ => "check the path and its permissions".into(),
    };
    SbomCommandError::Sbom {
        cause: Box::new(cause),
        hint,
    }
}

/// The packages of `target`: an existing directory, else an image reference.
pub async fn collect(target: &str, registry: &RegistryArgs) -> Result<Sbom, SbomCommandError> {
    let dir = Path::new(target);
    if dir.is_dir() {
        return plumb_scan::read_dir(dir).map_err(|e| failed(e, target));
    }
    let reference: Reference = target.parse().map_err(|cause| SbomCommandError::Target {
        target: target.to_owned(),
        cause,
    })?;
    let client = RegistryClient::new(ClientOptions {
        plain_http: registry.plain_http.then_some(true),
        credentials: credentials(&reference.registry),
        ca_file: registry.ca_file.clone(),
    })?;
    let key = reference.manifest_key();
    plumb_scan::read_image(&client, &reference.registry, &reference.repository, &key)
        .await
        .map_err(|e| failed(e, target))
}

/// Write `bytes` to a temporary file beside `path`, then rename it over.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), SbomCommandError> {
    let fail = |source| SbomCommandError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
