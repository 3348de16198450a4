//! `plumb secrets encrypt|decrypt`: SOPS files with age keys, without
//! installing sops; and the age keys `sync`, `diff` and `agent` decrypt with
//! (`--sops-age-key-file`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, sops' default
//! key file).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr};
use plumb_secrets::sops::{self, EncryptOptions, Format, Keyring, Rules};
use zeroize::Zeroizing;

/// The age keys for SOPS files, as flags.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// age key file for SOPS-encrypted files (also $SOPS_AGE_KEY_FILE; keys in
    /// $SOPS_AGE_KEY and ~/.config/sops/age/keys.txt are used too).
    #[arg(long, value_name = "FILE", env = "SOPS_AGE_KEY_FILE")]
    pub sops_age_key_file: Option<PathBuf>,
}

/// The age identities from the flag, the environment and sops' default file.
pub fn keyring(args: &KeyArgs) -> miette::Result<Keyring> {
    let mut keys = Keyring::new();
    if let Some(f) = &args.sops_age_key_file {
        keys.add_file(f).map_err(|e| miette::miette!("{e}"))?;
    }
    if let Some(text) = std::env::var_os("SOPS_AGE_KEY") {
        let text = Zeroizing::new(text.to_string_lossy().into_owned());
        keys.add_text(&text, "$SOPS_AGE_KEY")
            .map_err(|e| miette::miette!("{e}"))?;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let default = Path::new(&home).join(".config/sops/age/keys.txt");
        if default.is_file() {
            keys.add_file(&default)
                .map_err(|e| miette::miette!("{e}"))?;
        }
    }
    Ok(keys)
}

/// `plumb secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Encrypt a file with SOPS for age recipients (sops reads the result).
    Encrypt(EncryptArgs),
    /// Decrypt a SOPS file to standard output (never to a file).
    Decrypt(DecryptArgs),
    /// Find plaintext secrets in a directory, as `plumb sync` would refuse them (exit 1 when one would be refused).
    Scan(crate::secrets_scan::ScanArgs),
}

/// `plumb secrets encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The plaintext file.
    file: PathBuf,
    /// age recipient (age1…); repeatable. Default: the first matching
    /// creation rule of the nearest .sops.yaml above FILE.
    #[arg(long = "age", value_name = "RECIPIENT", value_delimiter = ',')]
    age: Vec<String>,
    /// Replace FILE with the encrypted file.
    #[arg(short = 'i', long, conflicts_with = "output")]
    in_place: bool,
    /// Write the encrypted file here (default: standard output).
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Encrypt only values under keys matching this regex.
    #[arg(long, value_name = "REGEX")]
    encrypted_regex: Option<String>,
    /// Leave values under keys matching this regex in clear.
    #[arg(long, value_name = "REGEX")]
    unencrypted_regex: Option<String>,
    /// Encrypt only values under keys ending with this.
    #[arg(long, value_name = "SUFFIX")]
    encrypted_suffix: Option<String>,
    /// Leave values under keys ending with this in clear (default `_unencrypted`).
    #[arg(long, value_name = "SUFFIX")]
    unencrypted_suffix: Option<String>,
    /// The MAC covers only the encrypted values.
    #[arg(long)]
    mac_only_encrypted: bool,
    /// yaml, json, dotenv or binary (default: from the file name).
    #[arg(long, value_name = "TYPE", value_parser = parse_format)]
    input_type: Option<Format>,
}

/// `plumb secrets decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The SOPS file.
    file: PathBuf,
    /// yaml, json, dotenv or binary (default: from the file name).
    #[arg(long, value_name = "TYPE", value_parser = parse_format)]
    input_type: Option<Format>,
    #[command(flatten)]
    keys: KeyArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Run a `plumb secrets` command.
pub fn run(cmd: SecretsCommand) -> miette::Result<ExitCode> {
    match cmd {
        SecretsCommand::Encrypt(a) => encrypt(a),
        SecretsCommand::Decrypt(a) => decrypt(a),
        SecretsCommand::Scan(a) => crate::secrets_scan::run(a),
    }
}

fn name(p: &Path) -> String {
    p.display().to_string()
}

fn encrypt(a: EncryptArgs) -> miette::Result<ExitCode> {
    let bytes = Zeroizing::new(
        std::fs::read(&a.file)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", a.file.display()))?,
    );
    let format = a.input_type.unwrap_or_else(|| Format::from_path(&a.file));
    let flag_rules = Rules {
        unencrypted_suffix: a.unencrypted_suffix.clone(),
        encrypted_suffix: a.encrypted_suffix.clone(),
        unencrypted_regex: a.unencrypted_regex.clone(),
        encrypted_regex: a.encrypted_regex.clone(),
        unencrypted_comment_regex: None,
        encrypted_comment_regex: None,
        mac_only_encrypted: a.mac_only_encrypted,
    };
    let flags_set = flag_rules != Rules::default();
    let opts = if a.age.is_empty() {
        let Some(config) = sops::find_config(&a.file) else {
            miette::bail!(
                "no --age recipient and no .sops.yaml above {}",
                a.file.display()
            );
        };
        let text = std::fs::read_to_string(&config)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", config.display()))?;
        let rule = sops::creation_rule(&config, &text, &a.file)
            .map_err(|e| miette::miette!("{e}"))?
            .ok_or_else(|| {
                miette::miette!(
                    "{}: no creation rule matches {}",
                    config.display(),
                    a.file.display()
                )
            })?;
        let mut o = rule.options;
        if flags_set {
            o.rules = flag_rules;
        }
        o
    } else {
        EncryptOptions {
            age: a.age.clone(),
            rules: flag_rules,
        }
    };
    let out =
        sops::encrypt(&name(&a.file), &bytes, format, &opts).map_err(|e| miette::miette!("{e}"))?;
    let dest = if a.in_place {
        Some(a.file.clone())
    } else {
        a.output.clone()
    };
    match dest {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write in {}", dir.display()))?;
            tmp.write_all(&out).into_diagnostic()?;
            tmp.persist(&path)
                .map_err(|e| e.error)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
            eprintln!("{}: encrypted for {}", path.display(), opts.age.join(", "));
        }
        None => std::io::stdout().write_all(&out).into_diagnostic()?,
    }
    Ok(ExitCode::SUCCESS)
}

fn decrypt(a: DecryptArgs) -> miette::Result<ExitCode> {
    let bytes = std::fs::read(&a.file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", a.file.display()))?;
    let format = a.input_type.unwrap_or_else(|| Format::from_path(&a.file));
    let keys = keyring(&a.keys)?;
    let plain =
        sops::decrypt(&name(&a.file), &bytes, format, &keys).map_err(|e| miette::miette!("{e}"))?;
    std::io::stdout()
        .write_all(plain.bytes())
        .into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}
