//! SOPS files with age recipients, read and written in the format of the real
//! `sops` (v3): YAML, JSON, dotenv and binary files.
//!
//! A SOPS file is the original document with each value to protect replaced by
//! `ENC[AES256_GCM,…]` under a random 32-byte data key, plus a `sops` section
//! (`sops_*` lines in dotenv) holding that key wrapped for each age recipient,
//! the rules that chose which keys are encrypted (`unencrypted_suffix`,
//! `encrypted_regex`, …), and a MAC: SHA-512 over the plaintext values in
//! document order, itself encrypted. [`decrypt`] unwraps the data key with a
//! [`Keyring`], decrypts every value the file's rules say is encrypted, checks
//! the MAC, and returns the plaintext file in memory ([`Plaintext`], wiped on
//! drop). [`encrypt`] writes a file the real `sops -d` reads.
//!
//! Errors name the file and, for a value, its path of keys; never a value.

mod cipher;
mod tree;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use regex::Regex;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use self::cipher::Plain;
use self::tree::{DotLine, Node};

/// The SOPS format version plumb writes (the format of sops 3.13).
pub const SOPS_VERSION: &str = "3.13.3";

/// The suffix that keeps a key's value in clear when no rule is given.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Bytes the MAC starts from when `mac_only_encrypted` is set (fixed by SOPS,
/// so that the two kinds of MAC never agree).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// How a file's content is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several documents.
    Yaml,
    /// JSON.
    Json,
    /// `KEY=VALUE` lines.
    Dotenv,
    /// Any bytes (stored by SOPS as a JSON document with one `data` value).
    Binary,
}

impl Format {
    /// The format SOPS picks for a file name: `.yaml`/`.yml`, `.json`, `.env`,
    /// anything else binary.
    pub fn from_path(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Format::Yaml,
            "json" => Format::Json,
            "env" => Format::Dotenv,
            _ => Format::Binary,
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            "dotenv" => Ok(Format::Dotenv),
            "binary" => Ok(Format::Binary),
            other => Err(format!(
                "unknown input type {other:?} (yaml, json, dotenv or binary)"
            )),
        }
    }
}

/// Why a SOPS file could not be read or written. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    /// The file does not parse in its format.
    #[error("{file}: not valid {format}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The format tried.
        format: &'static str,
        /// Where and why.
        message: String,
    },
    /// The file has no SOPS metadata.
    #[error("{file}: not a SOPS file (no `sops` section with `mac` and `version`)")]
    NotSops {
        /// The file.
        file: String,
    },
    /// The file already has SOPS metadata.
    #[error("{file}: already SOPS-encrypted")]
    AlreadyEncrypted {
        /// The file.
        file: String,
    },
    /// The `sops` section is malformed or uses what plumb does not support.
    #[error("{file}: SOPS metadata: {message}")]
    Metadata {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// No identity in the keyring opens the data key.
    #[error("{file}: no age identity matches recipients {}", recipients.join(", "))]
    NoMatchingKey {
        /// The file.
        file: String,
        /// The file's age recipients.
        recipients: Vec<String>,
    },
    /// The file is SOPS-encrypted but no key was given at all.
    #[error("{file}: SOPS-encrypted but no age key is configured (recipients {})", recipients.join(", "))]
    NoKeys {
        /// The file.
        file: String,
        /// The file's age recipients.
        recipients: Vec<String>,
    },
    /// One value did not decrypt.
    #[error("{file}: value at {path}: {message}")]
    Value {
        /// The file.
        file: String,
        /// The value's path of keys (`data:password`).
        path: String,
        /// Why.
        message: String,
    },
    /// The MAC does not match the content.
    #[error("{file}: MAC mismatch: the file was changed after it was encrypted")]
    Mac {
        /// The file.
        file: String,
    },
    /// An encryption rule is invalid.
    #[error("{0}")]
    Rules(String),
    /// A recipient or identity is invalid, or age failed.
    #[error("{0}")]
    Key(String),
}

/// The age identities that may open data keys. `Debug` shows only their
/// public recipients.
#[derive(Clone, Default)]
pub struct Keyring {
    identities: Vec<Arc<age::x25519::Identity>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("recipients", &self.recipients())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Add every `AGE-SECRET-KEY-1…` line of `text` (an age key file: `#`
    /// comments and blank lines allowed); `source` names it in errors, which
    /// never quote the text. Returns how many identities were added.
    pub fn add_text(&mut self, text: &str, source: &str) -> Result<usize, SopsError> {
        let mut added = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                SopsError::Key(format!(
                    "{source}: line {} is not an age identity (AGE-SECRET-KEY-1…)",
                    i + 1
                ))
            })?;
            self.identities.push(Arc::new(id));
            added += 1;
        }
        Ok(added)
    }

    /// A keyring from one key file's text.
    pub fn from_text(text: &str, source: &str) -> Result<Keyring, SopsError> {
        let mut k = Keyring::new();
        k.add_text(text, source)?;
        Ok(k)
    }

    /// Add the identities of an age key file.
    pub fn add_file(&mut self, path: &Path) -> Result<usize, SopsError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            SopsError::Key(format!(
                "{}: cannot read the age key file: {e}",
                path.display()
            ))
        })?);
        self.add_text(&text, &path.display().to_string())
    }

    /// Add every identity of `other`.
    pub fn extend(&mut self, other: &Keyring) {
        self.identities.extend(other.identities.iter().cloned());
    }

    /// Whether the keyring holds no identity.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// How many identities it holds.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// The public recipients (`age1…`) of the identities.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// The identities, as age takes them.
    pub(crate) fn age_identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
    }

    fn unwrap_key(&self, armored: &str) -> Option<Zeroizing<[u8; 32]>> {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let decryptor = age::Decryptor::new(reader).ok()?;
        let ids = self
            .identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity);
        let mut r = decryptor.decrypt(ids).ok()?;
        let mut buf = Zeroizing::new(Vec::new());
        r.read_to_end(&mut buf).ok()?;
        let mut key = Zeroizing::new([0u8; 32]);
        if buf.len() != 32 {
            return None;
        }
        key.copy_from_slice(&buf);
        Some(key)
    }
}

/// A new age identity (for tests and `plumb secrets keygen`-like helpers):
/// the secret key file text and its public recipient.
pub fn generate_identity() -> (Zeroizing<String>, String) {
    use secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let secret = Zeroizing::new(id.to_string().expose_secret().to_string());
    (secret, id.to_public().to_string())
}

/// Which keys are encrypted: at most one of the six SOPS rules (none means
/// `unencrypted_suffix: _unencrypted`), and whether the MAC covers only
/// encrypted values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Keys ending with this stay in clear.
    pub unencrypted_suffix: Option<String>,
    /// Only keys ending with this are encrypted.
    pub encrypted_suffix: Option<String>,
    /// Keys matching this stay in clear.
    pub unencrypted_regex: Option<String>,
    /// Only keys matching this are encrypted.
    pub encrypted_regex: Option<String>,
    /// Values under a comment matching this stay in clear.
    pub unencrypted_comment_regex: Option<String>,
    /// Only values under a comment matching this are encrypted.
    pub encrypted_comment_regex: Option<String>,
    /// The MAC covers only encrypted values.
    pub mac_only_encrypted: bool,
}

impl Rules {
    fn fields(&self) -> [(&'static str, &Option<String>); 6] {
        [
            ("unencrypted_suffix", &self.unencrypted_suffix),
            ("encrypted_suffix", &self.encrypted_suffix),
            ("unencrypted_regex", &self.unencrypted_regex),
            ("encrypted_regex", &self.encrypted_regex),
            ("unencrypted_comment_regex", &self.unencrypted_comment_regex),
            ("encrypted_comment_regex", &self.encrypted_comment_regex),
        ]
    }

    /// The rules with SOPS' default filled in; an error when more than one is set.
    fn normalized(&self) -> Result<Rules, String> {
        let set: Vec<&str> = self
            .fields()
            .iter()
            .filter(|(_, v)| v.as_deref().is_some_and(|s| !s.is_empty()))
            .map(|(n, _)| *n)
            .collect();
        if set.len() > 1 {
            return Err(format!(
                "use at most one of {} (SOPS allows one)",
                set.join(", ")
            ));
        }
        let mut r = self.clone();
        for v in [
            &mut r.unencrypted_suffix,
            &mut r.encrypted_suffix,
            &mut r.unencrypted_regex,
            &mut r.encrypted_regex,
            &mut r.unencrypted_comment_regex,
            &mut r.encrypted_comment_regex,
        ] {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        if set.is_empty() {
            r.unencrypted_suffix = Some(DEFAULT_UNENCRYPTED_SUFFIX.into());
        }
        Ok(r)
    }

    fn compile(&self) -> Result<Compiled, String> {
        let re = |name: &str, v: &Option<String>| -> Result<Option<Regex>, String> {
            v.as_deref()
                .map(|s| Regex::new(s).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        Ok(Compiled {
            unencrypted_suffix: self.unencrypted_suffix.clone(),
            encrypted_suffix: self.encrypted_suffix.clone(),
            unencrypted_regex: re("unencrypted_regex", &self.unencrypted_regex)?,
            encrypted_regex: re("encrypted_regex", &self.encrypted_regex)?,
            by_comment: self.unencrypted_comment_regex.is_some()
                || self.encrypted_comment_regex.is_some(),
        })
    }
}

struct Compiled {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<Regex>,
    encrypted_regex: Option<Regex>,
    /// Comment rules: plumb does not keep YAML comments, so a value is taken as
    /// encrypted when it is an `ENC[…]` value (the MAC still covers the file).
    by_comment: bool,
}

impl Compiled {
    /// SOPS' decision for a value at `path` (map keys only).
    fn encrypts(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            enc = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            enc = false;
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|p| r.is_match(p));
        }
        enc
    }
}

/// A decrypted file, in memory only; wiped when dropped. `Debug` shows its size.
pub struct Plaintext {
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.bytes.len())
    }
}

impl Plaintext {
    /// The plaintext file, in the format it was encrypted from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The metadata of a SOPS file.
struct Metadata {
    age: Vec<(String, String)>,
    other_kinds: Vec<&'static str>,
    lastmodified: String,
    mac: String,
    rules: Rules,
}

/// A file parsed in its format, with its metadata taken out.
enum Parsed {
    Docs(Vec<Node>),
    Dotenv(Vec<DotLine>),
}

fn parse_err(file: &str, format: Format, message: String) -> SopsError {
    SopsError::Parse {
        file: file.to_string(),
        format: match format {
            Format::Yaml => "YAML",
            Format::Json | Format::Binary => "JSON",
            Format::Dotenv => "dotenv",
        },
        message,
    }
}

fn utf8<'a>(file: &str, format: Format, bytes: &'a [u8]) -> Result<&'a str, SopsError> {
    std::str::from_utf8(bytes).map_err(|e| parse_err(file, format, format!("not UTF-8: {e}")))
}

/// Parse an encrypted file and split off its `sops` metadata.
fn load(file: &str, bytes: &[u8], format: Format) -> Result<(Parsed, Node), SopsError> {
    let text = utf8(file, format, bytes)?;
    let not_sops = || SopsError::NotSops {
        file: file.to_string(),
    };
    match format {
        Format::Yaml | Format::Json | Format::Binary => {
            let mut docs = if format == Format::Yaml {
                tree::parse_yaml(text).map_err(|m| parse_err(file, format, m))?
            } else {
                vec![tree::parse_json(text).map_err(|m| parse_err(file, format, m))?]
            };
            let mut meta = None;
            for (i, d) in docs.iter_mut().enumerate() {
                if let Node::Map(entries) = d
                    && let Some(pos) = entries.iter().position(|(k, _)| k == "sops")
                {
                    let (_, m) = entries.remove(pos);
                    if i == 0 {
                        meta = Some(m);
                    }
                }
            }
            let meta = meta.ok_or_else(not_sops)?;
            Ok((Parsed::Docs(docs), meta))
        }
        Format::Dotenv => {
            let lines = tree::parse_dotenv(text).map_err(|m| parse_err(file, format, m))?;
            let mut flat = Vec::new();
            let mut rest = Vec::new();
            for l in lines {
                match l {
                    DotLine::Pair(k, v) if k.starts_with("sops_") => {
                        flat.push((k["sops_".len()..].to_string(), v));
                    }
                    other => rest.push(other),
                }
            }
            if flat.is_empty() {
                return Err(not_sops());
            }
            Ok((Parsed::Dotenv(rest), tree::unflatten(&flat)))
        }
    }
}

fn read_metadata(file: &str, meta: &Node) -> Result<Metadata, SopsError> {
    let bad = |message: String| SopsError::Metadata {
        file: file.to_string(),
        message,
    };
    if !matches!(meta, Node::Map(_)) {
        return Err(SopsError::NotSops {
            file: file.to_string(),
        });
    }
    let text = |key: &str| -> Option<String> {
        match meta.get(key)? {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            _ => None,
        }
    };
    let (Some(mac), Some(_version)) = (text("mac"), text("version")) else {
        return Err(SopsError::NotSops {
            file: file.to_string(),
        });
    };
    let lastmodified = text("lastmodified").ok_or_else(|| bad("no lastmodified".into()))?;
    let mut age = Vec::new();
    let mut other_kinds = Vec::new();
    let mut collect = |group: &Node| -> Result<(), SopsError> {
        if let Some(Node::Seq(items)) = group.get("age") {
            for item in items {
                let r = item.get("recipient").and_then(Node::as_str);
                let e = item.get("enc").and_then(Node::as_str);
                match (r, e) {
                    (Some(r), Some(e)) => age.push((r.to_string(), e.to_string())),
                    _ => return Err(bad("an age entry lacks recipient or enc".into())),
                }
            }
        }
        for kind in ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"] {
            if matches!(group.get(kind), Some(Node::Seq(s)) if !s.is_empty()) {
                other_kinds.push(kind);
            }
        }
        Ok(())
    };
    collect(meta)?;
    if let Some(Node::Seq(groups)) = meta.get("key_groups") {
        let threshold = match meta.get("shamir_threshold") {
            Some(Node::Int(i)) => *i,
            Some(Node::Str(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        if groups.len() > 1 && threshold != 1 {
            return Err(bad(
                "key groups split with Shamir's secret sharing are not supported".into(),
            ));
        }
        for g in groups {
            collect(g)?;
        }
    }
    let rule = |k: &str| text(k).filter(|s| !s.is_empty());
    let rules = Rules {
        unencrypted_suffix: rule("unencrypted_suffix"),
        encrypted_suffix: rule("encrypted_suffix"),
        unencrypted_regex: rule("unencrypted_regex"),
        encrypted_regex: rule("encrypted_regex"),
        unencrypted_comment_regex: rule("unencrypted_comment_regex"),
        encrypted_comment_regex: rule("encrypted_comment_regex"),
        mac_only_encrypted: match meta.get("mac_only_encrypted") {
            Some(Node::Bool(b)) => *b,
            Some(Node::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        },
    };
    Ok(Metadata {
        age,
        other_kinds,
        lastmodified,
        mac,
        rules,
    })
}

/// Whether `bytes` (named `path`, whose extension gives the format) is a SOPS
/// file: a top-level `sops` section with `mac` and `version`.
pub fn is_sops_file(path: &Path, bytes: &[u8]) -> bool {
    is_sops(bytes, Format::from_path(path))
}

/// Whether `bytes` in `format` is a SOPS file.
pub fn is_sops(bytes: &[u8], format: Format) -> bool {
    // Cheap test first: every SOPS file names its MAC and version.
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if !(has(b"mac") && has(b"version") && has(b"sops")) {
        return false;
    }
    match load("", bytes, format) {
        Ok((_, meta)) => meta.get("mac").is_some() && meta.get("version").is_some(),
        Err(_) => false,
    }
}

/// The age recipients a SOPS file is encrypted to.
pub fn recipients(file: &str, bytes: &[u8], format: Format) -> Result<Vec<String>, SopsError> {
    let (_, meta) = load(file, bytes, format)?;
    Ok(read_metadata(file, &meta)?
        .age
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

/// Decrypt a SOPS file (`file` names it in errors) with `keys`: the data key
/// unwrapped, every value decrypted, the MAC verified. The plaintext is the
/// file in its own format (binary files: the original bytes).
pub fn decrypt(
    file: &str,
    bytes: &[u8],
    format: Format,
    keys: &Keyring,
) -> Result<Plaintext, SopsError> {
    let (parsed, meta) = load(file, bytes, format)?;
    let md = read_metadata(file, &meta)?;
    let recipients: Vec<String> = md.age.iter().map(|(r, _)| r.clone()).collect();
    if md.age.is_empty() {
        return Err(SopsError::Metadata {
            file: file.to_string(),
            message: if md.other_kinds.is_empty() {
                "no age recipients".into()
            } else {
                format!(
                    "encrypted only for {} (plumb reads age recipients)",
                    md.other_kinds.join(", ")
                )
            },
        });
    }
    if keys.is_empty() {
        return Err(SopsError::NoKeys {
            file: file.to_string(),
            recipients,
        });
    }
    let key = md
        .age
        .iter()
        .find_map(|(_, enc)| keys.unwrap_key(enc))
        .ok_or_else(|| SopsError::NoMatchingKey {
            file: file.to_string(),
            recipients: recipients.clone(),
        })?;
    let rules = md.rules.normalized().map_err(|m| SopsError::Metadata {
        file: file.to_string(),
        message: m,
    })?;
    let compiled = rules.compile().map_err(|m| SopsError::Metadata {
        file: file.to_string(),
        message: m,
    })?;
    let mut walk = Walk {
        file,
        key: &key,
        rules: &compiled,
        mac_only: rules.mac_only_encrypted,
        hash: Sha512::new(),
    };
    if walk.mac_only {
        walk.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let out = match (parsed, format) {
        (Parsed::Docs(docs), Format::Binary) => {
            let data = docs
                .first()
                .and_then(|d| d.get("data"))
                .and_then(Node::as_str);
            let Some(data) = data else {
                return Err(SopsError::Metadata {
                    file: file.to_string(),
                    message: "a binary SOPS file needs a `data` value".into(),
                });
            };
            let plain = if data.is_empty() {
                Zeroizing::new(Vec::new())
            } else {
                cipher::open(data, &key, "data:")
                    .map_err(|e| walk.value_err(&["data".into()], &e))?
                    .0
            };
            walk.hash.update(&plain[..]);
            plain
        }
        (Parsed::Docs(mut docs), _) => {
            for d in &mut docs {
                let mut path = Vec::new();
                walk.decrypt_node(d, &mut path)?;
            }
            Zeroizing::new(
                if format == Format::Json {
                    docs.first().map(tree::emit_json).unwrap_or_default()
                } else {
                    tree::emit_yaml(&docs)
                }
                .into_bytes(),
            )
        }
        (Parsed::Dotenv(mut lines), _) => {
            for l in &mut lines {
                match l {
                    DotLine::Comment(c) => {
                        if cipher::is_encrypted(c)
                            && (compiled.by_comment || compiled.encrypts(&[]))
                            && let Ok(Plain::Comment(t)) = cipher::decrypt(c, &key, ":")
                        {
                            *c = t;
                        }
                    }
                    DotLine::Pair(k, v) => {
                        let mut node = Node::Str(std::mem::take(v));
                        let path = vec![k.clone()];
                        walk.leaf(&mut node, &path)?;
                        *v = match node {
                            Node::Str(s) => s,
                            other => other
                                .mac_bytes()
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                                .unwrap_or_default(),
                        };
                    }
                }
            }
            Zeroizing::new(tree::emit_dotenv(&lines).into_bytes())
        }
    };
    let computed = hex::encode_upper(walk.hash.finalize());
    let stored = match cipher::decrypt(&md.mac, &key, &mac_aad(&md.lastmodified)) {
        Ok(Plain::Value(Node::Str(s))) => s,
        _ => {
            return Err(SopsError::Mac {
                file: file.to_string(),
            });
        }
    };
    if stored != computed {
        return Err(SopsError::Mac {
            file: file.to_string(),
        });
    }
    Ok(Plaintext { bytes: out })
}

/// The MAC's additional data: `lastmodified` as Go's RFC 3339 (seconds).
fn mac_aad(lastmodified: &str) -> String {
    match lastmodified.parse::<jiff::Timestamp>() {
        Ok(t) if lastmodified.ends_with('Z') => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => lastmodified.to_string(),
    }
}

struct Walk<'a> {
    file: &'a str,
    key: &'a [u8; 32],
    rules: &'a Compiled,
    mac_only: bool,
    hash: Sha512,
}

impl Walk<'_> {
    fn value_err(&self, path: &[String], e: &cipher::ValueError) -> SopsError {
        SopsError::Value {
            file: self.file.to_string(),
            path: if path.is_empty() {
                "(top level)".into()
            } else {
                path.join(":")
            },
            message: e.to_string(),
        }
    }

    /// Decrypt in place; entries that decrypt to comments are dropped.
    fn decrypt_node(&mut self, node: &mut Node, path: &mut Vec<String>) -> Result<bool, SopsError> {
        match node {
            Node::Map(entries) => {
                let mut keep = Vec::with_capacity(entries.len());
                for (k, mut v) in std::mem::take(entries) {
                    path.push(k.clone());
                    let kept = self.decrypt_node(&mut v, path)?;
                    path.pop();
                    if kept {
                        keep.push((k, v));
                    }
                }
                *entries = keep;
                Ok(true)
            }
            Node::Seq(items) => {
                let mut keep = Vec::with_capacity(items.len());
                for mut v in std::mem::take(items) {
                    if self.decrypt_node(&mut v, path)? {
                        keep.push(v);
                    }
                }
                *items = keep;
                Ok(true)
            }
            Node::Null => Ok(true),
            leaf => self.leaf(leaf, path),
        }
    }

    /// One leaf: decrypt when the rules say so, feed the MAC. False when the
    /// leaf was an encrypted comment.
    fn leaf(&mut self, node: &mut Node, path: &[String]) -> Result<bool, SopsError> {
        let encrypted = if self.rules.by_comment {
            matches!(node, Node::Str(s) if cipher::is_encrypted(s))
        } else {
            self.rules.encrypts(path)
        };
        if encrypted {
            match node {
                Node::Str(s) if s.is_empty() => {}
                Node::Str(s) => {
                    let aad = format!("{}:", path.join(":"));
                    match cipher::decrypt(s, self.key, &aad)
                        .map_err(|e| self.value_err(path, &e))?
                    {
                        Plain::Value(v) => *node = v,
                        Plain::Comment(_) => return Ok(false),
                    }
                }
                _ => {
                    return Err(self.value_err(path, &cipher::ValueError::Format));
                }
            }
        }
        if (!self.mac_only || encrypted)
            && let Some(b) = node.mac_bytes()
        {
            let b = Zeroizing::new(b);
            self.hash.update(&b[..]);
        }
        Ok(true)
    }

    fn encrypt_node(&mut self, node: &mut Node, path: &mut Vec<String>) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    path.push(k.clone());
                    self.encrypt_node(v, path);
                    path.pop();
                }
            }
            Node::Seq(items) => {
                for v in items.iter_mut() {
                    self.encrypt_node(v, path);
                }
            }
            Node::Null => {}
            leaf => {
                // Comment rules need comments, which plumb does not keep when
                // writing: they are refused before the walk.
                let encrypted = self.rules.encrypts(path);
                if (!self.mac_only || encrypted)
                    && let Some(b) = leaf.mac_bytes()
                {
                    let b = Zeroizing::new(b);
                    self.hash.update(&b[..]);
                }
                if encrypted {
                    *leaf = cipher::seal_node(leaf, self.key, &format!("{}:", path.join(":")));
                }
            }
        }
    }
}

/// How to encrypt: to whom, and which keys.
#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    /// age recipients (`age1…`), at least one.
    pub age: Vec<String>,
    /// Which keys are encrypted.
    pub rules: Rules,
}

/// Encrypt a plaintext file (`file` names it in errors) so that the real
/// `sops -d` and [`decrypt`] read it back. YAML comments are not kept.
pub fn encrypt(
    file: &str,
    bytes: &[u8],
    format: Format,
    opts: &EncryptOptions,
) -> Result<Vec<u8>, SopsError> {
    if opts.age.is_empty() {
        return Err(SopsError::Key(
            "no age recipient given (--age, or a .sops.yaml creation rule)".into(),
        ));
    }
    let recipients = opts
        .age
        .iter()
        .map(|r| {
            age::x25519::Recipient::from_str(r.trim())
                .map_err(|e| SopsError::Key(format!("{r:?} is not an age recipient: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rules = opts.rules.normalized().map_err(SopsError::Rules)?;
    if rules.unencrypted_comment_regex.is_some() || rules.encrypted_comment_regex.is_some() {
        return Err(SopsError::Rules(
            "plumb does not write files with comment rules (unencrypted_comment_regex, encrypted_comment_regex); use sops for those".into(),
        ));
    }
    let compiled = rules.compile().map_err(SopsError::Rules)?;
    let key = cipher::data_key();
    let mut walk = Walk {
        file,
        key: &key,
        rules: &compiled,
        mac_only: rules.mac_only_encrypted,
        hash: Sha512::new(),
    };
    if walk.mac_only {
        walk.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let already = || SopsError::AlreadyEncrypted {
        file: file.to_string(),
    };
    enum Out {
        Docs(Vec<Node>),
        Dotenv(Vec<DotLine>),
    }
    let out = match format {
        Format::Binary => {
            walk.hash.update(bytes);
            let data = if bytes.is_empty() {
                String::new()
            } else {
                cipher::seal(bytes, "str", &key, "data:")
            };
            Out::Docs(vec![Node::Map(vec![("data".into(), Node::Str(data))])])
        }
        Format::Yaml | Format::Json => {
            let text = utf8(file, format, bytes)?;
            // Parse errors of a plaintext file keep only the position.
            let mut docs = if format == Format::Yaml {
                tree::parse_yaml(text).map_err(|m| parse_err(file, format, position_only(&m)))?
            } else {
                vec![
                    tree::parse_json(text)
                        .map_err(|m| parse_err(file, format, position_only(&m)))?,
                ]
            };
            for d in &mut docs {
                if d.get("sops").is_some() {
                    return Err(already());
                }
                if !matches!(d, Node::Map(_)) {
                    return Err(parse_err(
                        file,
                        format,
                        "each document must be a mapping".into(),
                    ));
                }
                walk.encrypt_node(d, &mut Vec::new());
            }
            Out::Docs(docs)
        }
        Format::Dotenv => {
            let text = utf8(file, format, bytes)?;
            let mut lines = tree::parse_dotenv(text).map_err(|m| parse_err(file, format, m))?;
            for l in &mut lines {
                match l {
                    DotLine::Comment(c) => {
                        if compiled.encrypts(&[]) && !c.is_empty() {
                            *c = cipher::seal(c.as_bytes(), "comment", &key, ":");
                        }
                    }
                    DotLine::Pair(k, v) => {
                        if k.starts_with("sops_") {
                            return Err(already());
                        }
                        let mut node = Node::Str(std::mem::take(v));
                        walk.encrypt_node(&mut node, &mut vec![k.clone()]);
                        *v = node.as_str().unwrap_or_default().to_string();
                    }
                }
            }
            Out::Dotenv(lines)
        }
    };
    let mac = hex::encode_upper(walk.hash.finalize());
    let lastmodified = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let enc_mac = cipher::seal(mac.as_bytes(), "str", &key, &lastmodified);
    let mut age_entries = Vec::new();
    for (r, text) in recipients.iter().zip(&opts.age) {
        age_entries.push(Node::Map(vec![
            ("recipient".into(), Node::Str(text.trim().to_string())),
            ("enc".into(), Node::Str(wrap_key(r, &key)?)),
        ]));
    }
    let mut meta = vec![
        ("age".to_string(), Node::Seq(age_entries)),
        ("lastmodified".to_string(), Node::Str(lastmodified)),
        ("mac".to_string(), Node::Str(enc_mac)),
    ];
    for (name, v) in rules.fields() {
        if let Some(v) = v {
            meta.push((name.to_string(), Node::Str(v.clone())));
        }
    }
    if rules.mac_only_encrypted {
        meta.push(("mac_only_encrypted".into(), Node::Bool(true)));
    }
    meta.push(("version".into(), Node::Str(SOPS_VERSION.into())));
    let meta = Node::Map(meta);
    let text = match out {
        Out::Docs(mut docs) => {
            for d in &mut docs {
                if let Node::Map(e) = d {
                    e.push(("sops".into(), meta.clone()));
                }
            }
            if format == Format::Yaml {
                tree::emit_yaml(&docs)
            } else {
                docs.first().map(tree::emit_json).unwrap_or_default()
            }
        }
        Out::Dotenv(mut lines) => {
            let mut flat = Vec::new();
            tree::flatten(&meta, "", &mut flat);
            for (k, v) in flat {
                lines.push(DotLine::Pair(format!("sops_{k}"), v));
            }
            tree::emit_dotenv(&lines)
        }
    };
    Ok(text.into_bytes())
}

fn position_only(message: &str) -> String {
    // serde messages can quote the input; keep "line N column M" when present.
    let lower = message.to_ascii_lowercase();
    match lower.find("line") {
        Some(i) => message[i..]
            .split([',', ')'])
            .take(2)
            .collect::<Vec<_>>()
            .join(",")
            .trim()
            .to_string(),
        None => "syntax error".into(),
    }
}

fn wrap_key(recipient: &age::x25519::Recipient, key: &[u8; 32]) -> Result<String, SopsError> {
    let fail = |e: &dyn std::fmt::Display| SopsError::Key(format!("age: {e}"));
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| fail(&e))?;
    let mut w = enc.wrap_output(armored).map_err(|e| fail(&e))?;
    w.write_all(key).map_err(|e| fail(&e))?;
    w.finish().and_then(|a| a.finish()).map_err(|e| fail(&e))?;
    String::from_utf8(out).map_err(|e| fail(&e))
}

/// A `.sops.yaml` creation rule: which files it covers and how to encrypt them.
#[derive(Debug, Clone, Default)]
pub struct CreationRule {
    /// The `.sops.yaml` it came from.
    pub config: PathBuf,
    /// Its `path_regex` (matched against the path relative to the config's directory).
    pub path_regex: Option<String>,
    /// What to encrypt with.
    pub options: EncryptOptions,
}

/// The nearest `.sops.yaml` at or above `file`'s directory.
pub fn find_config(file: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(file).ok()?;
    let mut dir = abs.parent();
    while let Some(d) = dir {
        for name in [".sops.yaml", ".sops.yml"] {
            let c = d.join(name);
            if c.is_file() {
                return Some(c);
            }
        }
        dir = d.parent();
    }
    None
}

/// The first creation rule of `config` (text of a `.sops.yaml`) matching
/// `file`, as SOPS chooses it: `path_regex` against the path relative to the
/// config's directory; a rule without one matches every file.
pub fn creation_rule(
    config_path: &Path,
    config: &str,
    file: &Path,
) -> Result<Option<CreationRule>, SopsError> {
    let bad = |m: String| SopsError::Rules(format!("{}: {m}", config_path.display()));
    let root = tree::parse_yaml(config).map_err(bad)?;
    let Some(Node::Seq(rules)) = root.first().and_then(|d| d.get("creation_rules")) else {
        return Ok(None);
    };
    let dir = std::path::absolute(config_path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let rel = abs
        .strip_prefix(&dir)
        .unwrap_or(&abs)
        .to_string_lossy()
        .into_owned();
    for (i, r) in rules.iter().enumerate() {
        let s = |k: &str| r.get(k).and_then(Node::as_str).map(str::to_string);
        let path_regex = s("path_regex").filter(|p| !p.is_empty());
        if let Some(p) = &path_regex {
            let re =
                Regex::new(p).map_err(|e| bad(format!("creation_rules[{i}].path_regex: {e}")))?;
            if !re.is_match(&rel) {
                continue;
            }
        }
        let mut age = Vec::new();
        let mut add = |n: Option<&Node>| match n {
            Some(Node::Str(s)) => age.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            ),
            Some(Node::Seq(items)) => age.extend(
                items
                    .iter()
                    .filter_map(Node::as_str)
                    .map(|a| a.trim().to_string()),
            ),
            _ => {}
        };
        add(r.get("age"));
        if let Some(Node::Seq(groups)) = r.get("key_groups") {
            for g in groups {
                add(g.get("age"));
            }
        }
        let options = EncryptOptions {
            age,
            rules: Rules {
                unencrypted_suffix: s("unencrypted_suffix"),
                encrypted_suffix: s("encrypted_suffix"),
                unencrypted_regex: s("unencrypted_regex"),
                encrypted_regex: s("encrypted_regex"),
                unencrypted_comment_regex: s("unencrypted_comment_regex"),
                encrypted_comment_regex: s("encrypted_comment_regex"),
                mac_only_encrypted: matches!(r.get("mac_only_encrypted"), Some(Node::Bool(true))),
            },
        };
        return Ok(Some(CreationRule {
            config: config_path.to_path_buf(),
            path_regex,
            options,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> (Keyring, String) {
        let (secret, public) = generate_identity();
        (Keyring::from_text(&secret, "test").unwrap(), public)
    }

    fn opts(r: &str) -> EncryptOptions {
        EncryptOptions {
            age: vec![r.to_string()],
            rules: Rules::default(),
        }
    }

    #[test]
    fn yaml_round_trips_and_secrets_leave_the_text() {
        let (keys, r) = keyring();
        let plain = "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2-marker\n  port: 5432\n  ratio: 0.5\n  on: true\n  list: [a, b]\nnote_unencrypted: visible\n";
        let enc = encrypt("s.yaml", plain.as_bytes(), Format::Yaml, &opts(&r)).unwrap();
        let text = String::from_utf8(enc.clone()).unwrap();
        assert!(!text.contains("hunter2-marker"), "{text}");
        assert!(text.contains("note_unencrypted: visible"), "{text}");
        assert!(is_sops(&enc, Format::Yaml));
        let out = decrypt("s.yaml", &enc, Format::Yaml, &keys).unwrap();
        assert_eq!(
            tree::parse_yaml(std::str::from_utf8(out.bytes()).unwrap()).unwrap(),
            tree::parse_yaml(plain).unwrap()
        );
    }

    #[test]
    fn a_wrong_key_names_the_recipients() {
        let (_, r) = keyring();
        let (other, _) = keyring();
        let enc = encrypt("s.json", br#"{"a": "b"}"#, Format::Json, &opts(&r)).unwrap();
        let err = decrypt("s.json", &enc, Format::Json, &other).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("s.json: no age identity matches recipients {r}")
        );
        let err = decrypt("s.json", &enc, Format::Json, &Keyring::new()).unwrap_err();
        assert!(matches!(err, SopsError::NoKeys { .. }), "{err}");
    }

    #[test]
    fn an_unencrypted_value_changed_breaks_the_mac() {
        let (keys, r) = keyring();
        let enc = encrypt(
            "s.yaml",
            b"a: secret\nb_unencrypted: one\n",
            Format::Yaml,
            &opts(&r),
        )
        .unwrap();
        let tampered = String::from_utf8(enc)
            .unwrap()
            .replace("b_unencrypted: one", "b_unencrypted: two");
        let err = decrypt("s.yaml", tampered.as_bytes(), Format::Yaml, &keys).unwrap_err();
        assert!(matches!(err, SopsError::Mac { .. }), "{err}");
        assert!(err.to_string().starts_with("s.yaml: MAC mismatch"));
    }

    #[test]
    fn encrypted_regex_leaves_other_keys_clear() {
        let (keys, r) = keyring();
        let mut o = opts(&r);
        o.rules.encrypted_regex = Some("^(data|stringData)$".into());
        let plain = "kind: Secret\nmetadata:\n  name: x\nstringData:\n  k: v-secret\n";
        let enc = encrypt("s.yaml", plain.as_bytes(), Format::Yaml, &o).unwrap();
        let text = String::from_utf8(enc.clone()).unwrap();
        assert!(
            text.contains("name: x") && !text.contains("v-secret"),
            "{text}"
        );
        assert!(text.contains("encrypted_regex:"), "{text}");
        decrypt("s.yaml", &enc, Format::Yaml, &keys).unwrap();
        o.rules.unencrypted_suffix = Some("_x".into());
        assert!(encrypt("s.yaml", plain.as_bytes(), Format::Yaml, &o).is_err());
    }

    #[test]
    fn dotenv_and_binary_round_trip() {
        let (keys, r) = keyring();
        let env = "# db\nUSER=app\nPASS=p@ss\\nword\n";
        let enc = encrypt("a.env", env.as_bytes(), Format::Dotenv, &opts(&r)).unwrap();
        assert!(String::from_utf8_lossy(&enc).contains("sops_mac=ENC["));
        let out = decrypt("a.env", &enc, Format::Dotenv, &keys).unwrap();
        assert_eq!(out.bytes(), env.as_bytes());
        let bin = [0u8, 159, 146, 150, 10, 255];
        let enc = encrypt("a.bin", &bin, Format::Binary, &opts(&r)).unwrap();
        assert_eq!(
            decrypt("a.bin", &enc, Format::Binary, &keys)
                .unwrap()
                .bytes(),
            bin
        );
    }

    #[test]
    fn creation_rules_pick_by_path() {
        let cfg = "creation_rules:\n  - path_regex: prod/.*\\.yaml$\n    age: age1aaa, age1bbb\n    encrypted_regex: ^data$\n  - age: [age1ccc]\n";
        let dir = Path::new("/repo");
        let r = creation_rule(&dir.join(".sops.yaml"), cfg, &dir.join("prod/s.yaml"))
            .unwrap()
            .unwrap();
        assert_eq!(r.options.age, ["age1aaa", "age1bbb"]);
        assert_eq!(r.options.rules.encrypted_regex.as_deref(), Some("^data$"));
        let r = creation_rule(&dir.join(".sops.yaml"), cfg, &dir.join("dev/s.yaml"))
            .unwrap()
            .unwrap();
        assert_eq!(r.options.age, ["age1ccc"]);
    }

    #[test]
    fn keyring_errors_never_quote_the_key() {
        let err =
            Keyring::from_text("# c\nAGE-SECRET-KEY-1NOTAKEY\n", "env SOPS_AGE_KEY").unwrap_err();
        assert!(!err.to_string().contains("NOTAKEY"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        let (k, r) = keyring();
        assert!(format!("{k:?}").contains(&r));
    }
}
