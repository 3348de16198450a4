//! `plumb secrets scan DIR`, the `--secrets-plaintext` switch of `plumb
//! sync|diff|status|agent|infra`, and the check it adds to the pipeline.
//!
//! The scanner lives in plumb-secrets and the check in plumb-pipeline; this
//! module reads directories, parses the switch and presents findings (text,
//! JSON or SARIF 2.1.0), never with a secret value in them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use miette::IntoDiagnostic;
use plumb_git::GitCache;
use plumb_pipeline::{Check, PlaintextSecrets};
use plumb_secrets::scan::{self, Finding, Mode, Scan};

/// Largest file read by a directory scan.
const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Directories a scan never enters.
const SKIPPED_DIRS: &[&str] = &[".git", ".terraform", "node_modules", ".plumb"];

/// Parse `--secrets-plaintext`.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>().map_err(|e| e.to_string())
}

/// The `--secrets-plaintext` switch shared by the commands that sync.
#[derive(Debug, Clone, Args)]
pub struct ModeArg {
    /// Plaintext secrets in Git: refuse the sync, warn and go on, or allow (see docs/SECRETS.md).
    #[arg(long = "secrets-plaintext", value_name = "MODE", default_value = "refuse", value_parser = parse_mode)]
    pub secrets_plaintext: Mode,
}

/// The pipeline check for `mode`, reading sources from `git`; none for `allow`.
pub fn check(git: GitCache, mode: Mode) -> Option<Arc<dyn Check>> {
    (mode != Mode::Allow).then(|| Arc::new(PlaintextSecrets::new(git, mode)) as Arc<dyn Check>)
}

/// Output formats of `plumb secrets scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// `file:line:col: rule: hint`, one finding a line.
    #[default]
    Text,
    /// A JSON array of findings.
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}

/// `plumb secrets scan` arguments.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The directory to scan (a checkout, an Application's path, a Terraform stack).
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// `refuse` exits 1 when something is found; `warn` reports and exits 0.
    #[arg(long = "secrets-plaintext", value_name = "MODE", default_value = "refuse", value_parser = parse_mode)]
    mode: Mode,
}

/// Every file under `dir` a scan reads, as (`/`-separated relative path, bytes).
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, shown)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            let rel = if shown.is_empty() {
                name.clone()
            } else {
                format!("{shown}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) {
                    pending.push((entry.path(), rel));
                }
                continue;
            }
            // Files, and symlinks to files (never symlinked directories: no loops).
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_file() && meta.len() <= MAX_FILE_SIZE {
                out.push((rel, std::fs::read(entry.path())?));
            }
        }
    }
    Ok(out)
}

/// Scan a directory on disk.
pub fn scan_dir(dir: &Path) -> std::io::Result<Vec<Finding>> {
    let mut s = Scan::new();
    for (path, data) in read_dir(dir)? {
        s.add_file(&path, &data);
    }
    Ok(s.finish())
}

/// Run `plumb secrets scan`.
pub fn run(args: ScanArgs) -> miette::Result<ExitCode> {
    if !args.dir.is_dir() {
        return Err(miette::miette!(
            help = "pass a directory: plumb secrets scan DIR",
            "{} is not a directory",
            args.dir.display()
        ));
    }
    let found = scan_dir(&args.dir)
        .into_diagnostic()
        .map_err(|e| e.wrap_err(format!("cannot read {}", args.dir.display())))?;
    let refuse = args.mode == Mode::Refuse;
    let found = if args.mode == Mode::Allow {
        Vec::new()
    } else {
        found
    };
    match args.format {
        Format::Text => {
            for f in &found {
                println!("{f}");
            }
            if !found.is_empty() {
                eprintln!(
                    "{} plaintext secret finding(s); encrypt with SOPS, reference a secret store, or allow with a reason (docs/SECRETS.md)",
                    found.len()
                );
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&found).into_diagnostic()?
        ),
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&scan::sarif(&found, refuse)).into_diagnostic()?
        ),
    }
    Ok(ExitCode::from(u8::from(refuse && !found.is_empty())))
}

/// The plaintext-secret pre-check of `plumb infra plan|apply` on the stack
/// in `dir`: an error listing the findings when `mode` refuses them.
pub fn infra_precheck(dir: &Path, mode: Mode) -> Result<(), (String, String)> {
    if mode == Mode::Allow {
        return Ok(());
    }
    let found = scan_dir(dir).map_err(|e| {
        (
            format!("cannot scan {} for plaintext secrets: {e}", dir.display()),
            "make the stack directory readable".to_string(),
        )
    })?;
    let found: Vec<Finding> = found
        .into_iter()
        .filter(|f| {
            let ext = f.file.rsplit_once('.').map_or("", |(_, e)| e);
            matches!(ext, "tf" | "tfvars" | "hcl") || f.file.ends_with(".tf.json")
        })
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let listed = found
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if mode == Mode::Warn {
        eprintln!("warning: plaintext secrets (-secrets-plaintext=warn: not refused):\n{listed}");
        return Ok(());
    }
    Err((
        format!("plaintext secrets in the configuration; nothing was planned or applied:\n{listed}"),
        "use a sensitive variable without a default (set it with TF_VAR_… or a SOPS-encrypted tfvars), or mark the line `# plumb:allow-secret RULE REASON`; -secrets-plaintext=warn reports without refusing".to_string(),
    ))
}
