//! Bearer token auth: the Docker/OCI token flow, with the registry as its
//! own token server.
//!
//! With `auth.scheme: token` (or `both`) a request without a usable token is
//! answered `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`;
//! the client fetches a token from `GET /token?service=…&scope=…` (Basic
//! credentials of an htpasswd user, or none for anonymous pulls) or `POST
//! /token` (the OAuth2 `grant_type=password` form) and repeats the request
//! with `Authorization: Bearer <token>`.
//!
//! Tokens are JWTs signed ES256 with a P-256 key ([`TokenIssuer`]). The
//! header's `kid` is the key's JWK thumbprint (RFC 7638, SHA-256,
//! base64url): it is a standard, computable from the public key alone, and
//! nothing but this registry verifies these tokens. The claims are `iss`,
//! `sub` (the user, empty for anonymous), `aud` (the service), `exp`, `nbf`,
//! `iat`, `jti` and `access`, the list of `{type, name, actions}` grants: the
//! actions requested, intersected with what the user's role allows. Every
//! request's token is checked for signature, issuer, audience and validity
//! window (with [`LEEWAY_SECS`] of clock skew) and for a grant of the action
//! on the repository it touches. Tokens are credentials: they are never
//! logged nor put in error text.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::{Role, TokenSettings};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";

/// Why the signing key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable or unwritable file.
    #[error("token key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a P-256 private key in PEM (PKCS#8).
    #[error("token key {path}: not a P-256 private key in PKCS#8 PEM ({message})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// One grant of a token: actions on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`, `gc` for `registry`).
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user, empty when anonymous.
    pub sub: String,
    /// Audience: the registry's service name.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Not before, unix seconds.
    pub nbf: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// What the token allows.
    pub access: Vec<Grant>,
}

impl Claims {
    /// Whether the token grants `action` on `kind`/`name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| {
            g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

/// Why a presented token is refused (the token itself is never part of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// Signature does not verify with this registry's key.
    #[error("token signature is invalid")]
    Signature,
    /// Wrong issuer or audience.
    #[error("token was issued for another service")]
    Audience,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("token is not valid yet")]
    NotYetValid,
}

/// Signs and verifies the registry's tokens.
pub struct TokenIssuer {
    key: SigningKey,
    verifying: VerifyingKey,
    kid: String,
    settings: TokenSettings,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("service", &self.settings.service)
            .finish()
    }
}

/// 32 random bytes from the kernel.
fn random32() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b)
}

/// Read the PEM key at `path`, or make one there (mode 0600) when it does not exist.
fn load_or_create_key(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = loop {
                if let Ok(k) = SigningKey::from_bytes(&random32().map_err(io)?.into()) {
                    break k;
                }
            };
            let pem =
                key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                    .map_err(|e| KeyError::Format {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(pem.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// The RFC 7638 thumbprint of a P-256 public key, base64url.
fn jwk_thumbprint(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let coord = |c: Option<&p256::FieldBytes>| c.map(|b| B64URL.encode(b)).unwrap_or_default();
    // Members in lexical order, no whitespace, as RFC 7638 requires.
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        coord(point.x()),
        coord(point.y())
    );
    B64URL.encode(sha2::Sha256::digest(jwk.as_bytes()))
}

impl TokenIssuer {
    /// The issuer of `settings`, with its key read from `settings.key` or
    /// `default_key` (made there on first use).
    pub fn open(settings: TokenSettings, default_key: &Path) -> Result<Self, KeyError> {
        let path = settings
            .key
            .clone()
            .unwrap_or_else(|| default_key.to_owned());
        let key = load_or_create_key(&path)?;
        let verifying = *key.verifying_key();
        Ok(TokenIssuer {
            kid: jwk_thumbprint(&verifying),
            key,
            verifying,
            settings,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The key id in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign a token for `sub` with `access`, valid from `now` for the configured expiry.
    pub fn issue(&self, sub: &str, access: Vec<Grant>, now: i64) -> String {
        let jti = random32()
            .map(hex::encode)
            .unwrap_or_else(|_| format!("{now}-{}", crate::blobs::random_id()));
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: sub.to_owned(),
            aud: self.settings.service.clone(),
            exp: now + self.settings.expiry.as_secs() as i64,
            nbf: now,
            iat: now,
            jti,
            access,
        };
        self.sign(&claims)
    }

    /// Sign arbitrary claims (tests use it to make expired tokens).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "kid": self.kid });
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(payload)
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64URL.encode(sig.to_bytes()))
    }

    /// Check a token's signature, issuer, audience and validity at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = B64URL
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(TokenError::Signature);
        }
        let sig = B64URL
            .decode(s)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(TokenError::Signature)?;
        let input_len = h.len() + 1 + p.len();
        self.verifying
            .verify(&token.as_bytes()[..input_len], &sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64URL
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.aud != self.settings.service || claims.iss != self.settings.issuer {
            return Err(TokenError::Audience);
        }
        if now >= claims.exp + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY_SECS < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// A requested scope, `type:name:actions` (the name may hold `:` for a port-less
/// registry host, so the type is split off the left and the actions off the right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: String,
    /// The resource.
    pub name: String,
    /// The actions asked for.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parse one scope; `None` when malformed.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// What a caller of `/token` may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// No credentials, on a registry that allows anonymous pulls.
    Anonymous,
    /// A user with a role.
    User(Role),
}

/// The grants `holder` receives for `scopes`: each scope's actions intersected
/// with what the holder may do. A `read` user (and an anonymous caller) may
/// pull repositories and list the catalog; a `push` user may also push and
/// delete, and run GC (`registry:gc:*`). Scopes granting nothing are left out.
pub fn grant(holder: Holder, scopes: &[Scope]) -> Vec<Grant> {
    let mut out: Vec<Grant> = vec![];
    for s in scopes {
        let allowed: &[&str] = match (s.kind.as_str(), s.name.as_str(), holder) {
            ("repository", _, Holder::User(Role::Push)) => &["pull", "push", "delete"],
            ("repository", _, _) => &["pull"],
            ("registry", "catalog", _) => &["*"],
            ("registry", "gc", Holder::User(Role::Push)) => &["*"],
            _ => &[],
        };
        let actions: Vec<String> = s
            .actions
            .iter()
            .filter(|a| allowed.contains(&a.as_str()) || (a.as_str() == "*" && allowed.len() == 3))
            .flat_map(|a| {
                if a == "*" && allowed.len() == 3 {
                    allowed.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>()
                } else {
                    vec![a.clone()]
                }
            })
            .collect();
        if actions.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|g| g.kind == s.kind && g.name == s.name)
        {
            Some(g) => {
                for a in actions {
                    if !g.actions.contains(&a) {
                        g.actions.push(a);
                    }
                }
            }
            None => out.push(Grant {
                kind: s.kind.clone(),
                name: s.name.clone(),
                actions,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn issuer(dir: &Path) -> TokenIssuer {
        TokenIssuer::open(TokenSettings::default(), &dir.join("token/key.pem")).unwrap()
    }

    fn pull(name: &str) -> Vec<Grant> {
        vec![Grant {
            kind: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into()],
        }]
    }

    #[test]
    fn key_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let a = issuer(dir.path());
        let path = dir.path().join("token/key.pem");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = issuer(dir.path());
        assert_eq!(a.kid(), b.kid(), "the same key is read back");
        std::fs::write(dir.path().join("bad.pem"), "nope").unwrap();
        let s = TokenSettings {
            key: Some(dir.path().join("bad.pem")),
            ..TokenSettings::default()
        };
        let e = TokenIssuer::open(s, &path).unwrap_err();
        assert!(e.to_string().contains("bad.pem"), "{e}");
    }

    #[test]
    fn tokens_verify_and_tampering_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let t = issuer(dir.path());
        let tok = t.issue("alice", pull("a/b"), 1000);
        let c = t.verify(&tok, 1001).unwrap();
        assert!(c.allows("repository", "a/b", "pull"));
        assert!(!c.allows("repository", "a/b", "push"));
        assert!(!c.allows("repository", "a/c", "pull"));
        // Expired (past exp and the leeway), not yet valid.
        assert_eq!(
            t.verify(&tok, 1000 + 300 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        assert_eq!(
            t.verify(&tok, 1000 - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
        // A payload granting more, under the old signature.
        let parts: Vec<&str> = tok.split('.').collect();
        let mut claims = c.clone();
        claims.access[0].actions.push("push".into());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64URL.encode(serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        assert_eq!(t.verify(&forged, 1001), Err(TokenError::Signature));
        // Another registry's key.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            issuer(other.path()).verify(&tok, 1001),
            Err(TokenError::Signature)
        );
        // Another audience.
        let s = TokenSettings {
            service: "elsewhere".into(),
            expiry: Duration::from_secs(60),
            ..TokenSettings::default()
        };
        let t2 = TokenIssuer::open(s, &dir.path().join("token/key.pem")).unwrap();
        assert_eq!(t2.verify(&tok, 1001).unwrap_err(), TokenError::Audience);
        assert_eq!(t.verify("a.b", 1), Err(TokenError::Malformed));
    }

    #[test]
    fn grants_intersect_with_the_role() {
        let scopes: Vec<Scope> = [
            "repository:a/b:pull,push",
            "registry:catalog:*",
            "registry:gc:*",
        ]
        .iter()
        .map(|s| Scope::parse(s).unwrap())
        .collect();
        let g = grant(Holder::User(Role::Read), &scopes);
        assert_eq!(g[0].actions, vec!["pull"]);
        assert_eq!(g[1].name, "catalog");
        assert_eq!(g.len(), 2, "a reader may not run GC");
        let g = grant(Holder::User(Role::Push), &scopes);
        assert_eq!(g[0].actions, vec!["pull", "push"]);
        assert_eq!(g.len(), 3);
        let g = grant(Holder::Anonymous, &scopes[..1]);
        assert_eq!(g[0].actions, vec!["pull"]);
        assert!(Scope::parse("repository").is_none());
        assert_eq!(
            Scope::parse("repository:host:5000/a:pull").unwrap().name,
            "host:5000/a"
        );
    }
}
