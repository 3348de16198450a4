//! `plumb artifact scan REF|DIR` (or `--sbom FILE`): match an image's or a
//! directory's packages against the imported advisories and report.
//!
//! Exit codes: 0 when no finding is at or above `--fail-on` (or none is
//! given), 1 when one is, 2 on any error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plumb_scan::{Sbom, Severity, output};

use crate::artifact::RegistryArgs;

/// How to write the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ScanFormat {
    /// A table for people: ID, SEVERITY, PACKAGE, VERSION, FIXED.
    #[default]
    Table,
    /// plumb's scan report (what the deploy gate reads), with scanner, database and subject.
    Json,
    /// SARIF 2.1.0, for code scanning tools.
    Sarif,
}

/// A severity threshold as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any finding, even one without a severity.
    #[value(alias = "any")]
    Unknown,
    /// LOW and above.
    Low,
    /// MEDIUM (moderate) and above.
    #[value(alias = "moderate")]
    Medium,
    /// HIGH and above.
    High,
    /// CRITICAL only.
    Critical,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Severity {
        match f {
            FailOn::Unknown => Severity::Unknown,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

/// `plumb artifact scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// The image (HOST/REPO:TAG or HOST/REPO@DIGEST) or directory to scan.
    #[arg(
        value_name = "REF|DIR",
        required_unless_present = "sbom",
        conflicts_with = "sbom"
    )]
    pub target: Option<String>,
    /// Scan the packages listed in an SBOM file (plumb's own SBOM JSON) instead.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ScanFormat,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    /// How to reach the registry, for an image.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run a scan.
pub async fn run(data_dir: &Path, args: ScanArgs) -> miette::Result<ExitCode> {
    let store = super::advisories::open_store(data_dir)?;
    let sbom = match (&args.sbom, &args.target) {
        (Some(file), _) => read_sbom(file)?,
        (None, Some(target)) => collect(target, &args.registry).await?,
        (None, None) => {
            return Err(miette::miette!(
                "nothing to scan: give REF|DIR or --sbom FILE"
            ));
        }
    };
    let doc = plumb_scan::scan(&sbom, &store).map_err(|e| miette::miette!("{e}"))?;
    let text = match args.format {
        ScanFormat::Table => output::table(&doc),
        ScanFormat::Json => json(&doc)?,
        ScanFormat::Sarif => json(&output::sarif(&doc))?,
    };
    print!("{text}");
    let failing = args
        .fail_on
        .map(Severity::from)
        .is_some_and(|threshold| doc.report.findings.iter().any(|f| f.severity >= threshold));
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn json<T: serde::Serialize>(value: &T) -> miette::Result<String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| miette::miette!("{e}"))?;
    text.push('\n');
    Ok(text)
}

/// Read plumb's own SBOM JSON.
fn read_sbom(file: &Path) -> miette::Result<Sbom> {
    let bytes = std::fs::read(file).map_err(|e| miette::miette!("{}: {e}", file.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        miette::miette!(
            help = "--sbom takes plumb's SBOM JSON: {\"subject\": …, \"packages\": [{\"ecosystem\", \"name\", \"version\", \"purl\", \"location\"}]}",
            "{}:{}:{}: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })
}

/// The packages of an image or a directory.
async fn collect(target: &str, registry: &RegistryArgs) -> miette::Result<Sbom> {
    Ok(crate::scan::sbom::collect(target, registry).await?)
}
