//! State encryption as a stack configures it: the `encryption` block of
//! `terraform {}`, an OpenTofu-style subset with one key provider, age.
//!
//! ```hcl
//! terraform {
//!   encryption {
//!     key_provider "age" "team" {
//!       recipients = ["age1…"]
//!     }
//!     state {
//!       key      = key_provider.age.team
//!       enforced = true
//!     }
//!   }
//! }
//! ```
//!
//! This module reads the block (every value a literal, checked before any
//! state is touched) and turns it into plumb-state's [`StateEncryption`]
//! with an age [`StateCipher`]: writes are sealed for the recipients, reads
//! open with the identities the caller passed in
//! [`Environment::state_keys`]. plumb-state stores and checks; it never sees
//! HCL or a key format.

use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::Structure;
use plumb_secrets::sealed::{self, Recipients, SealError};
use plumb_secrets::sops::Keyring;
use plumb_state::{CipherError, StateCipher, StateEncryption};
use zeroize::Zeroizing;

use crate::config::{EncryptionBlock, ModuleConfig, Origin, expr_text, label_text};
use crate::diag::{ConfigError, Diag};
use crate::environment::Environment;
use crate::vars;

/// What the `encryption` block says about state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEncryptionConfig {
    /// The key provider's address, `key_provider.age.NAME`.
    pub key_provider: String,
    /// The age recipients state is sealed for.
    pub recipients: Vec<String>,
    /// Refuse to read a plaintext state.
    pub enforced: bool,
}

/// The stack's state encryption, with `env`'s identities to open it;
/// `None` when the root module configures none.
pub fn state_encryption(
    root: &ModuleConfig,
    env: &Environment,
) -> Result<Option<StateEncryption>, ConfigError> {
    let Some(block) = &root.encryption else {
        return Ok(None);
    };
    let Some(config) = read(block, root, env)? else {
        return Ok(None);
    };
    let recipients = Recipients::parse(&config.recipients).map_err(|e| {
        block
            .origin
            .diag(format!("{}: {e}", config.key_provider))
            .hint("recipients are age X25519 public keys, as age-keygen prints them")
    })?;
    let cipher = AgeStateCipher {
        key_provider: config.key_provider,
        recipients,
        keys: env.state_keys.clone(),
    };
    Ok(Some(StateEncryption::new(
        Arc::new(cipher),
        config.enforced,
    )))
}

/// Reads the block; `None` when it has no `state` block (nothing to
/// encrypt). Every problem is reported at once.
pub fn read(
    block: &EncryptionBlock,
    root: &ModuleConfig,
    env: &Environment,
) -> Result<Option<StateEncryptionConfig>, ConfigError> {
    let origin = &block.origin;
    let file = &origin.file;
    let at = |span: Option<std::ops::Range<usize>>, message: String| -> Diag {
        origin.diag_at(span, message)
    };
    let mut errs = Vec::new();
    let mut providers: Vec<(String, Vec<String>)> = Vec::new();
    let mut state: Option<(Option<String>, bool, Origin)> = None;
    let literal = |e: &Expression| vars::literal(e, file, &root.dir, env.home.as_deref());
    for s in block.body.iter() {
        let b = match s {
            Structure::Attribute(a) => {
                errs.push(at(
                    a.span(),
                    format!(
                        "unexpected attribute {:?} in encryption",
                        a.key.value().as_str()
                    ),
                ));
                continue;
            }
            Structure::Block(b) => b,
        };
        let labels: Vec<String> = b.labels.iter().map(label_text).collect();
        match b.ident.value().as_str() {
            "key_provider" => {
                let [kind, name] = labels.as_slice() else {
                    errs.push(at(
                        b.span(),
                        "a key_provider block needs two labels: key_provider \"age\" \"NAME\""
                            .into(),
                    ));
                    continue;
                };
                if kind != "age" {
                    errs.push(
                        at(
                            b.span(),
                            format!("key_provider {kind:?} is not supported by plumb"),
                        )
                        .hint("use key_provider \"age\" \"NAME\" { recipients = [\"age1…\"] }"),
                    );
                    continue;
                }
                let mut recipients = None;
                for a in b.body.attributes() {
                    match a.key.value().as_str() {
                        "recipients" => match literal(&a.value) {
                            Ok(v) => match strings(&v) {
                                Some(list) => recipients = Some(list),
                                None => errs.push(at(
                                    a.value.span(),
                                    "recipients must be a list of strings".into(),
                                )),
                            },
                            Err(d) => errs.push(d),
                        },
                        other => errs.push(at(
                            a.span(),
                            format!("unexpected attribute {other:?} in key_provider \"age\""),
                        )),
                    }
                }
                match recipients {
                    Some(r) => providers.push((format!("key_provider.age.{name}"), r)),
                    None => errs.push(at(
                        b.span(),
                        format!("key_provider \"age\" {name:?} needs recipients"),
                    )),
                }
            }
            "state" => {
                let here = Origin {
                    file: file.clone(),
                    span: b.span(),
                };
                let mut key = None;
                let mut enforced = false;
                for a in b.body.attributes() {
                    match a.key.value().as_str() {
                        "key" => key = Some(expr_text(file, &a.value)),
                        "enforced" => match literal(&a.value).map(|v| v.unmarked().clone()) {
                            Ok(plumb_tfplugin::Value::Bool(x)) => enforced = x,
                            Ok(_) => errs
                                .push(at(a.value.span(), "enforced must be true or false".into())),
                            Err(d) => errs.push(d),
                        },
                        "method" => errs.push(
                            at(a.span(), "plumb's state block takes key, not method".into())
                                .hint("write key = key_provider.age.NAME"),
                        ),
                        other => errs.push(at(
                            a.span(),
                            format!("unexpected attribute {other:?} in state"),
                        )),
                    }
                }
                for inner in b.body.blocks() {
                    errs.push(at(
                        inner.span(),
                        format!(
                            "{:?} blocks in state are not supported by plumb",
                            inner.ident.value().as_str()
                        ),
                    ));
                }
                state = Some((key, enforced, here));
            }
            other @ ("method" | "plan" | "remote_state_data_sources") => errs.push(
                at(
                    b.span(),
                    format!("{other:?} in encryption is not supported by plumb"),
                )
                .hint(
                    "plumb encrypts state with key_provider \"age\" and a state { key = … } block",
                ),
            ),
            other => errs.push(at(
                b.span(),
                format!("unexpected block {other:?} in encryption"),
            )),
        }
    }
    let config = match state {
        None => None,
        Some((None, _, here)) => {
            errs.push(
                here.diag("the state block needs key")
                    .hint("write key = key_provider.age.NAME"),
            );
            None
        }
        Some((Some(key), enforced, here)) => {
            match providers.iter().find(|(name, _)| *name == key) {
                Some((name, recipients)) => Some(StateEncryptionConfig {
                    key_provider: name.clone(),
                    recipients: recipients.clone(),
                    enforced,
                }),
                None => {
                    errs.push(
                        here.diag(format!("state key {key} names no key_provider block"))
                            .hint("declare key_provider \"age\" \"NAME\" { recipients = [...] } in the same encryption block"),
                    );
                    None
                }
            }
        }
    };
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(errs))
    }
}

fn strings(v: &plumb_tfplugin::Value) -> Option<Vec<String>> {
    match v.unmarked() {
        plumb_tfplugin::Value::List(items) | plumb_tfplugin::Value::Set(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// Seals state for age recipients; opens it with the caller's identities.
struct AgeStateCipher {
    key_provider: String,
    recipients: Recipients,
    keys: Keyring,
}

impl StateCipher for AgeStateCipher {
    fn method(&self) -> &str {
        "age"
    }

    fn key_provider(&self) -> &str {
        &self.key_provider
    }

    fn recipients(&self) -> Vec<String> {
        self.recipients.to_strings()
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        self.recipients
            .seal(plaintext)
            .map_err(|e| CipherError::Failed(e.to_string()))
    }

    fn open(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        sealed::open(&self.keys, ciphertext).map_err(|e| match e {
            SealError::NoKeys => CipherError::NoKeys,
            SealError::NoMatchingKey => CipherError::NoMatchingKey,
            other => CipherError::Failed(other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(text: &str) -> Result<Option<StateEncryptionConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), text).unwrap();
        let root = crate::parse::load(dir.path()).unwrap();
        read(
            root.encryption.as_ref().unwrap(),
            &root,
            &Environment::default(),
        )
    }

    #[test]
    fn reads_the_age_subset() {
        let c = config(
            r#"terraform {
  encryption {
    key_provider "age" "team" {
      recipients = ["age1a", "age1b"]
    }
    state {
      key      = key_provider.age.team
      enforced = true
    }
  }
}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.key_provider, "key_provider.age.team");
        assert_eq!(c.recipients, ["age1a", "age1b"]);
        assert!(c.enforced);
    }

    #[test]
    fn refuses_what_plumb_does_not_do() {
        let e = config(
            r#"terraform {
  encryption {
    key_provider "pbkdf2" "p" {
      passphrase = "x"
    }
    method "aes_gcm" "m" {
      keys = key_provider.pbkdf2.p
    }
    state {
      key = key_provider.age.missing
    }
  }
}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key_provider \"pbkdf2\" is not supported"),
            "{e}"
        );
        assert!(e.contains("\"method\" in encryption"), "{e}");
        assert!(e.contains("names no key_provider"), "{e}");
    }
}
