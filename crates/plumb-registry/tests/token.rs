//! Bearer token auth: real clients (crane, oras, skopeo) log in, push and
//! pull through the token flow; tokens are scoped to repositories and
//! actions, expire, and cannot be forged; Basic keeps working with `both`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{PASSWORD, READER, READER_PASSWORD, TestRegistry, USER, run, tool};

const TOKEN: &str = "  scheme: token\n";
const BOTH: &str = "  scheme: both\n";

/// A token from the registry's `/token` for `scope`, as `user`.
fn token(reg: &TestRegistry, user: (&str, &str), scope: &str) -> String {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/token", reg.url()))
        .query(&[("service", "plumb-registry"), ("scope", scope)])
        .basic_auth(user.0, Some(user.1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert_eq!(v["expires_in"], 300);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'), "{v}");
    v["token"].as_str().unwrap().to_owned()
}

fn bearer(
    reg: &TestRegistry,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .request(method, format!("{}{path}", reg.url()))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn challenge(r: &reqwest::blocking::Response) -> String {
    r.headers()["www-authenticate"].to_str().unwrap().to_owned()
}

/// A one-file layer tarball.
fn layer(dir: &Path, text: &str) -> PathBuf {
    let mut bytes = vec![];
    {
        let mut b = tar::Builder::new(&mut bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "hello.txt", text.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let p = dir.join("layer.tar");
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A docker config directory with nobody logged in (clients log in themselves).
fn empty_config(reg: &TestRegistry, name: &str) -> PathBuf {
    let d = reg.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), "{}").unwrap();
    d
}

fn crane(config: &Path) -> Command {
    let mut c = Command::new(tool("crane"));
    c.env("DOCKER_CONFIG", config).arg("--insecure");
    c
}

fn digest_of(config: &Path, r: &str) -> String {
    let out = run(crane(config).args(["digest", r]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn unauthenticated_requests_get_a_bearer_challenge_with_the_scope() {
    let reg = TestRegistry::start_with(TOKEN);
    let http = reg.http().anonymous();
    let r = http.get("/v2/");
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert_eq!(
        c,
        format!(
            "Bearer realm=\"http://{}/token\",service=\"plumb-registry\"",
            reg.host()
        )
    );
    let r = http.get("/v2/team/app/tags/list");
    assert!(challenge(&r).ends_with(",scope=\"repository:team/app:pull\""));
    let r = http.post("/v2/team/app/blobs/uploads/");
    assert!(challenge(&r).ends_with(",scope=\"repository:team/app:pull,push\""));
    let r = http.get("/v2/_catalog");
    assert!(challenge(&r).ends_with(",scope=\"registry:catalog:*\""));
    // With `scheme: token`, Basic credentials are only taken at /token.
    let r = reg.http().get("/v2/team/app/tags/list");
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).starts_with("Bearer "));
    // Wrong credentials at /token are refused.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/token?scope=repository:a:pull", reg.url()))
        .basic_auth(USER, Some("not-the-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // Anonymous callers get no token unless anonymous_pull is on.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/token?scope=repository:a:pull", reg.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn crane_oras_and_skopeo_log_in_push_and_pull_with_tokens() {
    let reg = TestRegistry::start_with(TOKEN);
    let host = reg.host();
    // crane logs in, and pushes an image it builds from a layer.
    let cfg = empty_config(&reg, "crane-config");
    run(crane(&cfg).args(["auth", "login", &host, "-u", USER, "-p", PASSWORD]));
    let src = format!("{host}/tokens/crane:v1");
    run(crane(&cfg)
        .args(["append", "--oci-empty-base", "-f"])
        .arg(layer(reg.dir.path(), "token flow"))
        .args(["-t", &src]));
    let digest = digest_of(&cfg, &src);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let pulled = reg.dir.path().join("crane-pulled");
    run(crane(&cfg)
        .args(["pull", "--format=oci", &src])
        .arg(&pulled));
    assert!(pulled.join("index.json").exists());

    // oras logs in, copies the image to another repository and pulls it.
    let oras_cfg = empty_config(&reg, "oras-config");
    let oras = || {
        let mut c = Command::new(tool("oras"));
        c.env("DOCKER_CONFIG", &oras_cfg)
            .env("HOME", reg.dir.path());
        c
    };
    run(oras().args(["login", "--plain-http", "-u", USER, "-p", PASSWORD, &host]));
    let by_oras = format!("{host}/tokens/oras:v1");
    run(oras().args(["cp", "--from-plain-http", "--to-plain-http", &src, &by_oras]));
    let layout = reg.dir.path().join("oras-layout");
    run(oras()
        .args(["cp", "--from-plain-http", "--to-oci-layout", &by_oras])
        .arg(format!("{}:v1", layout.display())));
    assert_eq!(digest_of(&cfg, &by_oras), digest);

    // skopeo copies with credentials on its command line, through tokens.
    let creds = format!("{USER}:{PASSWORD}");
    let by_skopeo = format!("docker://{host}/tokens/skopeo:v1");
    run(Command::new(tool("skopeo")).args([
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &format!("docker://{src}"),
        &by_skopeo,
    ]));
    let dst = reg.dir.path().join("skopeo-layout");
    run(Command::new(tool("skopeo")).args([
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &by_skopeo,
        &format!("oci:{}:v1", dst.display()),
    ]));
    assert_eq!(digest_of(&cfg, &format!("{host}/tokens/skopeo:v1")), digest);

    // The reader may pull through tokens but not push.
    let reader = empty_config(&reg, "reader-config");
    run(crane(&reader).args(["auth", "login", &host, "-u", READER, "-p", READER_PASSWORD]));
    assert_eq!(digest_of(&reader, &src), digest);
    let out = crane(&reader)
        .args(["copy", &src, &format!("{host}/tokens/by-reader:v1")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a reader's token must not push");
}

#[test]
fn a_token_for_one_repository_cannot_push_to_another() {
    let reg = TestRegistry::start_with(TOKEN);
    let t = token(&reg, (USER, PASSWORD), "repository:team/a:pull,push");
    let r = bearer(&reg, reqwest::Method::POST, "/v2/team/a/blobs/uploads/", &t);
    assert_eq!(r.status(), 202, "the token's own repository");
    let r = bearer(&reg, reqwest::Method::POST, "/v2/team/b/blobs/uploads/", &t);
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert!(
        c.contains("scope=\"repository:team/b:pull,push\"") && c.contains("insufficient_scope"),
        "{c}"
    );
    assert_eq!(
        bearer(&reg, reqwest::Method::GET, "/v2/team/b/tags/list", &t).status(),
        401,
        "nor read it"
    );
    // A pull-only token cannot push to its own repository.
    let t = token(&reg, (USER, PASSWORD), "repository:team/a:pull");
    let r = bearer(&reg, reqwest::Method::POST, "/v2/team/a/blobs/uploads/", &t);
    assert_eq!(r.status(), 401);
    // A reader asking for push is granted pull only.
    let t = token(
        &reg,
        (READER, READER_PASSWORD),
        "repository:team/a:pull,push",
    );
    let r = bearer(&reg, reqwest::Method::POST, "/v2/team/a/blobs/uploads/", &t);
    assert_eq!(r.status(), 401);
    let claims = reg
        .registry
        .tokens()
        .unwrap()
        .verify(&t, plumb_now())
        .unwrap();
    assert_eq!(claims.sub, READER);
    assert_eq!(claims.access[0].actions, vec!["pull"]);
}

fn plumb_now() -> i64 {
    plumb_registry::service::now()
}

#[test]
fn expired_tampered_and_foreign_tokens_are_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let reg = TestRegistry::start_with(TOKEN);
    let good = token(&reg, (USER, PASSWORD), "repository:app:pull,push");
    assert_eq!(
        bearer(&reg, reqwest::Method::POST, "/v2/app/blobs/uploads/", &good).status(),
        202
    );
    let issuer = reg.registry.tokens().unwrap();
    let mut claims = issuer.verify(&good, plumb_now()).unwrap();
    // Expired well beyond the leeway.
    claims.exp = plumb_now() - 120;
    claims.nbf = plumb_now() - 600;
    let expired = issuer.sign(&claims);
    assert_eq!(
        bearer(&reg, reqwest::Method::GET, "/v2/app/tags/list", &expired).status(),
        401
    );
    // A payload granting another repository under the good signature.
    let mut claims = issuer.verify(&good, plumb_now()).unwrap();
    claims.access[0].name = "other".into();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(
        bearer(
            &reg,
            reqwest::Method::POST,
            "/v2/other/blobs/uploads/",
            &forged
        )
        .status(),
        401
    );
    // A token another plumb registry issued (another key).
    let other = TestRegistry::start_with(TOKEN);
    let foreign = token(&other, (USER, PASSWORD), "repository:app:pull,push");
    assert_eq!(
        bearer(
            &reg,
            reqwest::Method::POST,
            "/v2/app/blobs/uploads/",
            &foreign
        )
        .status(),
        401
    );
    assert_eq!(
        bearer(&reg, reqwest::Method::GET, "/v2/", "not.a-token").status(),
        401
    );
}

#[test]
fn the_oauth2_password_grant_issues_tokens_too() {
    let reg = TestRegistry::start_with(TOKEN);
    let form = format!(
        "grant_type=password&service=plumb-registry&client_id=test&username={USER}&password={PASSWORD}&scope=repository%3Aapp%3Apull%2Cpush%20registry%3Acatalog%3A%2A"
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/token", reg.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let t = v["access_token"].as_str().unwrap();
    assert_eq!(
        bearer(&reg, reqwest::Method::POST, "/v2/app/blobs/uploads/", t).status(),
        202
    );
    assert_eq!(
        bearer(&reg, reqwest::Method::GET, "/v2/_catalog", t).status(),
        200
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/token", reg.url()))
        .body("grant_type=refresh_token&refresh_token=x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn basic_still_works_with_both() {
    let reg = TestRegistry::start_with(BOTH);
    let http = reg.http();
    http.push_image("both/app", "v1", &[b"layer with basic"]);
    assert_eq!(http.get("/v2/both/app/tags/list").status(), 200);
    assert_eq!(
        http.with_user(USER, "wrong")
            .get("/v2/both/app/tags/list")
            .status(),
        401
    );
    let anonymous = reg.http().anonymous().get("/v2/both/app/tags/list");
    assert!(challenge(&anonymous).starts_with("Bearer realm="));
    // crane through tokens, on the same registry.
    let cfg = reg.docker_config();
    let r = format!("{}/both/app:v1", reg.host());
    let copied = format!("{}/both/copy:v1", reg.host());
    run(crane(&cfg).args(["copy", &r, &copied]));
    assert_eq!(digest_of(&cfg, &r), digest_of(&cfg, &copied));
}
