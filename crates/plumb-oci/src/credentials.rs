//! Who plumb is to a registry: a user name and password, and where to find them.
//!
//! This module owns the lookup of registry credentials in the places people
//! already keep them: plumb's own two variables, else the `auths` of the docker
//! configuration file that `docker login`, crane and oras write. It exists apart
//! from the client because the lookup reads a process's environment, which a
//! library must not do on its own: the caller hands the environment in as a
//! function (the command line passes `std::env::var_os`, a test a map), so the
//! same lookup serves a process, a test and an agent acting for someone else.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// The variable holding the user name plumb presents to every registry.
pub const USERNAME_VAR: &str = "PLUMB_REGISTRY_USERNAME";
/// The variable holding that user's password.
pub const PASSWORD_VAR: &str = "PLUMB_REGISTRY_PASSWORD";

/// A user name and password for a registry.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (never printed).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// Credentials for `registry` in the environment `env` reads variables
    /// from: [`USERNAME_VAR`] and [`PASSWORD_VAR`] when both are set (and
    /// UTF-8), else the docker configuration file's entry for `registry`
    /// (`$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`).
    pub fn from_environment(
        registry: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Option<Credentials> {
        let text = |name: &str| env(name).and_then(|v| v.into_string().ok());
        if let (Some(username), Some(password)) = (text(USERNAME_VAR), text(PASSWORD_VAR)) {
            return Some(Credentials { username, password });
        }
        let dir = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".docker")))?;
        Credentials::from_docker_config(&dir.join("config.json"), registry)
    }

    /// The `auths.<registry>.auth` entry of the docker configuration file at
    /// `path`; `None` when the file, the entry or its encoding is missing.
    pub fn from_docker_config(path: &Path, registry: &str) -> Option<Credentials> {
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let auth = v["auths"][registry]["auth"].as_str()?;
        let decoded = String::from_utf8(B64.decode(auth).ok()?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, OsString)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn plumb_variables_come_first_then_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}}}}}}"#,
                B64.encode("docker-user:docker-pass")
            ),
        )
        .unwrap();
        let docker = ("DOCKER_CONFIG", dir.path().as_os_str().to_owned());
        let both = env(&[
            (USERNAME_VAR, "ci".into()),
            (PASSWORD_VAR, "s3cret".into()),
            docker.clone(),
        ]);
        let c = Credentials::from_environment("reg.example:5000", both).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ci", "s3cret"));
        // One of the two variables alone does not count.
        let half = env(&[(USERNAME_VAR, "ci".into()), docker.clone()]);
        let c = Credentials::from_environment("reg.example:5000", half).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("docker-user", "docker-pass")
        );
        let docker_only = env(&[docker]);
        assert!(Credentials::from_environment("other.example", docker_only).is_none());
        let home_only = env(&[("HOME", dir.path().as_os_str().to_owned())]);
        assert!(Credentials::from_environment("reg.example:5000", home_only).is_none());
        assert!(Credentials::from_environment("reg.example:5000", env(&[])).is_none());
    }
}
