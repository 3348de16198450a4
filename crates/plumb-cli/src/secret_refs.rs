//! Where `plumb.dev/secret-ref…` references may be resolved from: the flags
//! `plumb sync|diff|status|agent` share.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use plumb_pipeline::SecretRefs;
use plumb_secrets::refs::{FileRoots, Vault, VaultAuth, VaultConfig};
use secrecy::SecretString;

/// Reference flags.
#[derive(Debug, Args)]
pub struct RefArgs {
    /// Allow `file://` references under this directory (repeatable). Without
    /// one, file references are refused.
    #[arg(long = "secret-ref-root", value_name = "DIR")]
    pub roots: Vec<PathBuf>,
    /// Vault address for `vault://` references (also $VAULT_ADDR).
    #[arg(long, value_name = "URL", env = "VAULT_ADDR")]
    pub vault_addr: Option<String>,
    /// A file holding the Vault token (default: $VAULT_TOKEN).
    #[arg(long, value_name = "FILE", conflicts_with = "vault_role")]
    pub vault_token_file: Option<PathBuf>,
    /// Log in to Vault with Kubernetes auth as this role instead of a token.
    #[arg(long, value_name = "ROLE")]
    pub vault_role: Option<String>,
    /// The Kubernetes auth method's mount.
    #[arg(long, value_name = "PATH", default_value = "kubernetes")]
    pub vault_auth_mount: String,
    /// The service account token Kubernetes auth presents.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub vault_jwt_file: PathBuf,
    /// PEM CA certificates to trust for Vault's TLS (also $VAULT_CACERT).
    #[arg(long, value_name = "FILE", env = "VAULT_CACERT")]
    pub vault_cacert: Option<PathBuf>,
    /// Vault namespace (also $VAULT_NAMESPACE).
    #[arg(long, value_name = "NS", env = "VAULT_NAMESPACE")]
    pub vault_namespace: Option<String>,
}

/// The resolver the flags describe.
pub fn secret_refs(args: &RefArgs) -> miette::Result<SecretRefs> {
    let vault = match &args.vault_addr {
        None => None,
        Some(addr) => {
            let auth = match (&args.vault_role, &args.vault_token_file) {
                (Some(role), _) => VaultAuth::Kubernetes {
                    role: role.clone(),
                    mount: args.vault_auth_mount.clone(),
                    jwt_file: args.vault_jwt_file.clone(),
                },
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        miette::miette!("cannot read Vault token file {}: {e}", file.display())
                    })?;
                    VaultAuth::Token(SecretString::from(text.trim().to_string()))
                }
                (None, None) => match std::env::var("VAULT_TOKEN") {
                    Ok(t) if !t.trim().is_empty() => {
                        VaultAuth::Token(SecretString::from(t.trim().to_string()))
                    }
                    _ => {
                        return Err(miette::miette!(
                            help = "set $VAULT_TOKEN, --vault-token-file FILE or --vault-role ROLE",
                            "a Vault address is set but no way to log in to it"
                        ));
                    }
                },
            };
            let ca_pem = match &args.vault_cacert {
                Some(f) => Some(std::fs::read(f).map_err(|e| {
                    miette::miette!("cannot read Vault CA file {}: {e}", f.display())
                })?),
                None => None,
            };
            let config = VaultConfig {
                ca_pem,
                addr: addr.clone(),
                auth,
                namespace: args.vault_namespace.clone(),
                timeout: Duration::from_secs(10),
            };
            Some(Vault::new(config).map_err(|e| miette::miette!("{e}"))?)
        }
    };
    Ok(SecretRefs::new(FileRoots::new(args.roots.clone()), vault))
}
