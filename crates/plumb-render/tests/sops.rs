//! SOPS files in rendered trees: decrypted for real kustomize and helm in a
//! staging directory that is gone after the build (failed or not), never
//! cached, and refused when no tmpfs is there.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use plumb_git::{Credentials, GitCache};
use plumb_model::application::{ApplicationSource, HelmSource};
use plumb_render::{Keyring, RenderError, RenderRequest, Renderer, Tools};
use plumb_secrets::sops::{self, EncryptOptions, Format, generate_identity};
use plumb_testenv::git::GitRepo;
use plumb_testenv::tool_path;

const MARKER: &str = "render-sops-marker-91c2";

struct Fixture {
    dir: tempfile::TempDir,
    cache: GitCache,
    keys: Keyring,
    recipient: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shm")).unwrap();
    let (secret, recipient) = generate_identity();
    Fixture {
        cache: GitCache::new(dir.path().join("git"), Credentials::default()),
        keys: Keyring::from_text(&secret, "test").unwrap(),
        recipient,
        dir,
    }
}

impl Fixture {
    fn renderer(&self, secrets_dir: &Path) -> Renderer {
        let tools = Tools {
            kustomize: tool_path("kustomize"),
            helm: tool_path("helm"),
            timeout: std::time::Duration::from_secs(60),
        };
        Renderer::new(tools, self.dir.path().join("render")).with_secrets_dir(secrets_dir)
    }

    fn encrypt(&self, name: &str, text: &str) -> Vec<u8> {
        let opts = EncryptOptions {
            age: vec![self.recipient.clone()],
            ..Default::default()
        };
        sops::encrypt(
            name,
            text.as_bytes(),
            Format::from_path(Path::new(name)),
            &opts,
        )
        .unwrap()
    }

    fn render(
        &self,
        renderer: &Renderer,
        repo: &GitRepo,
        source: &ApplicationSource,
        keys: &Keyring,
    ) -> Result<plumb_render::Rendered, RenderError> {
        let c = self.cache.fetch(&repo.url(), "HEAD").unwrap();
        let snap = self.cache.snapshot(&repo.url(), &c.id).unwrap();
        renderer.render_with_keys(
            &RenderRequest {
                app_name: "demo",
                namespace: Some("prod"),
                source,
            },
            &snap,
            keys,
        )
    }

    fn shm(&self) -> std::path::PathBuf {
        self.dir.path().join("shm")
    }
}

fn source(repo: &GitRepo, path: &str) -> ApplicationSource {
    ApplicationSource {
        repo_url: repo.url(),
        path: Some(path.into()),
        ..Default::default()
    }
}

fn contains(dir: &Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn kustomize_generators_read_decrypted_files_staged_then_removed() {
    let f = fixture();
    let repo = GitRepo::new();
    repo.write(
        "k/kustomization.yaml",
        "generatorOptions: {disableNameSuffixHash: true}\nsecretGenerator:\n  - name: s\n    envs: [a.env]\n",
    );
    repo.write("k/a.env", f.encrypt("a.env", &format!("PW={MARKER}\n")));
    repo.write(
        "broken/kustomization.yaml",
        "resources: [missing.yaml]\nsecretGenerator:\n  - name: s\n    envs: [a.env]\n",
    );
    repo.write(
        "broken/a.env",
        f.encrypt("a.env", &format!("PW={MARKER}\n")),
    );
    repo.commit("one");
    let renderer = f.renderer(&f.shm());

    let r = f
        .render(&renderer, &repo, &source(&repo, "k"), &f.keys)
        .unwrap();
    let data = r.manifests[0].object["data"]["PW"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        MARKER.as_bytes()
    );
    // The staging area is empty again, and nothing decrypted was cached or left.
    assert_eq!(std::fs::read_dir(f.shm()).unwrap().count(), 0);
    assert!(!contains(&f.dir.path().join("render"), MARKER));

    // A failing build removes its staging area too.
    let err = f
        .render(&renderer, &repo, &source(&repo, "broken"), &f.keys)
        .unwrap_err();
    assert!(matches!(err, RenderError::Tool { .. }), "{err}");
    assert_eq!(std::fs::read_dir(f.shm()).unwrap().count(), 0);

    // No key: the file is named.
    let err = f
        .render(&renderer, &repo, &source(&repo, "k"), &Keyring::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("broken/a.env: SOPS-encrypted but no age key")
            || err
                .to_string()
                .starts_with("k/a.env: SOPS-encrypted but no age key"),
        "{err}"
    );

    // No tmpfs: refused, nothing written anywhere.
    let gone = f.dir.path().join("no-shm");
    let err = f
        .render(&f.renderer(&gone), &repo, &source(&repo, "k"), &f.keys)
        .unwrap_err();
    assert!(matches!(err, RenderError::NoTmpfs { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("plumb does not write decrypted files to disk")
    );
}

#[test]
fn helm_value_files_and_plain_directories_decrypt() {
    let f = fixture();
    let repo = GitRepo::new();
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    );
    repo.write(
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: {{ .Values.v | quote }}\n",
    );
    repo.write(
        "chart/secrets.yaml",
        f.encrypt("secrets.yaml", &format!("v: {MARKER}\n")),
    );
    repo.write(
        "plain/s.yaml",
        f.encrypt(
            "s.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: {MARKER}\n"
            ),
        ),
    );
    repo.commit("one");
    let renderer = f.renderer(&f.shm());
    let mut src = source(&repo, "chart");
    src.helm = Some(HelmSource {
        value_files: vec!["secrets.yaml".into()],
        ..Default::default()
    });
    let r = f.render(&renderer, &repo, &src, &f.keys).unwrap();
    assert_eq!(r.manifests[0].object["data"]["v"], MARKER);
    let r = f
        .render(&renderer, &repo, &source(&repo, "plain"), &f.keys)
        .unwrap();
    assert_eq!(r.manifests[0].object["stringData"]["k"], MARKER);
    assert_eq!(std::fs::read_dir(f.shm()).unwrap().count(), 0);
    assert!(!contains(&f.dir.path().join("render"), MARKER));
}
