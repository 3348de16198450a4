//! `plumb advisories import PATH` and `plumb advisories status`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plumb_scan::AdvisoryStore;
use plumb_scan::advisories::{AdvisoryError, ImportOptions, import};

use crate::gitops::Output;

/// Where the advisory store lives under the data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("advisories")
}

/// The offline advisory database scans match against.
#[derive(Debug, clap::Subcommand)]
pub enum AdvisoriesCommand {
    /// Import OSV records (a directory tree of *.json, or a .zip such as osv-scanner's
    /// per-ecosystem all.zip) into the local store, replacing it atomically; prints the
    /// record count and the content digest every scan report then carries.
    Import(ImportArgs),
    /// Show the imported store: content digest, record count, import time.
    Status(StatusArgs),
}

/// `plumb advisories import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A directory of OSV JSON records (searched recursively) or a zip of them.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Import the valid records and list the invalid ones, instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// `plumb advisories status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Run an advisories command.
pub fn run(data_dir: &Path, command: AdvisoriesCommand) -> miette::Result<ExitCode> {
    match command {
        AdvisoriesCommand::Import(args) => import_cmd(data_dir, args),
        AdvisoriesCommand::Status(args) => status(data_dir, args),
    }
}

fn import_cmd(data_dir: &Path, args: ImportArgs) -> miette::Result<ExitCode> {
    let dir = store_dir(data_dir);
    let options = ImportOptions {
        skip_invalid: args.skip_invalid,
    };
    let summary = import(&args.path, &dir, options).map_err(|e| match e {
        AdvisoryError::Invalid { .. } => miette::miette!(
            help = "fix or remove those files, or pass --skip-invalid to import the rest",
            "{e}"
        ),
        other => miette::miette!("{other}"),
    })?;
    for bad in &summary.skipped {
        eprintln!("warning: skipped invalid record {bad}");
    }
    let meta = &summary.meta;
    match args.output {
        Output::Json => {
            let value = serde_json::json!({
                "digest": meta.digest,
                "advisories": meta.advisories,
                "packages": meta.packages,
                "imported": meta.imported,
                "source": meta.source,
                "files": summary.files,
                "withdrawn": summary.withdrawn,
                "skipped": summary.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "store": dir.join(plumb_scan::advisories::STORE_FILE),
            });
            println!("{value:#}");
        }
        Output::Text => {
            println!(
                "imported {} advisories for {} packages from {} ({} files, {} withdrawn, {} invalid skipped)",
                meta.advisories,
                meta.packages,
                meta.source,
                summary.files,
                summary.withdrawn,
                summary.skipped.len()
            );
            println!("digest {}", meta.digest);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Open the store under `data_dir`, with a hint when none was imported.
pub fn open_store(data_dir: &Path) -> miette::Result<AdvisoryStore> {
    AdvisoryStore::open(&store_dir(data_dir)).map_err(|e| match e {
        AdvisoryError::NoStore { .. } => miette::miette!(
            help = "import OSV records first: plumb advisories import PATH (a directory or zip of OSV JSON)",
            "{e}"
        ),
        other => miette::miette!("{other}"),
    })
}

fn status(data_dir: &Path, args: StatusArgs) -> miette::Result<ExitCode> {
    let store = open_store(data_dir)?;
    let meta = store.meta();
    match args.output {
        Output::Json => {
            let mut value = serde_json::to_value(meta).map_err(|e| miette::miette!("{e}"))?;
            value["store"] = serde_json::json!(store.path());
            println!("{value:#}");
        }
        Output::Text => {
            println!("store      {}", store.path().display());
            println!("digest     {}", meta.digest);
            println!("advisories {}", meta.advisories);
            println!("packages   {}", meta.packages);
            println!("imported   {}", meta.imported);
            println!("source     {}", meta.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}
