//! `plumb infra` with secrets, end to end through the real binary: variable
//! files and a YAML document encrypted by the real `sops`, the real random
//! provider from the test mirror, and state sealed at rest with age in a local
//! file and in a real PostgreSQL. Marker values that exist only inside the
//! SOPS files, and the secrets the provider makes, must never show in output,
//! logs, plan files or the stored state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../plumb-state/tests/support/infra_tools.rs"]
mod infra_tools;
#[path = "../../plumb-state/tests/support/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use infra_tools::infra_tools;
use plumb_secrets::sops::{Keyring, generate_identity};

/// Markers that live only inside SOPS files.
const M_TFVARS: &str = "mk4Tfvars9QzSecret";
const M_JSON: &str = "mk7JsonVars2XqSecret";
const M_YAML: &str = "mk3YamlVars8WpSecret";
const M_SOPSFILE: &str = "mk5SopsFile1RtSecret";

/// An age identity in a file.
struct Key {
    file: PathBuf,
    recipient: String,
    keys: Keyring,
}

fn key(dir: &Path, name: &str) -> Key {
    let (secret, recipient) = generate_identity();
    let file = dir.join(name);
    std::fs::write(&file, format!("{}\n", &*secret)).unwrap();
    Key {
        file,
        recipient,
        keys: Keyring::from_text(&secret, name).unwrap(),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{}", self.all());
        self
    }
    #[track_caller]
    fn failed(self) -> Run {
        assert_eq!(self.code, 1, "{}", self.all());
        self
    }
    #[track_caller]
    fn shows(&self, needle: &str) -> &Run {
        assert!(
            self.all().contains(needle),
            "no {needle:?} in:\n{}",
            self.all()
        );
        self
    }
    #[track_caller]
    fn hides(&self, secrets: &[&str]) -> &Run {
        for s in secrets {
            assert!(!self.all().contains(s), "{s:?} shown in:\n{}", self.all());
        }
        self
    }
}

/// A stack directory, the keys, and a scratch directory outside the stack.
struct Stack {
    dir: tempfile::TempDir,
    aux: tempfile::TempDir,
    sops: Key,
    state: Key,
    stranger: Key,
}

impl Stack {
    fn new(main_tf: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let aux = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(aux.path().join("home")).unwrap();
        let sops = key(aux.path(), "sops.agekey");
        let state = key(aux.path(), "state.agekey");
        let stranger = key(aux.path(), "stranger.agekey");
        let s = Stack {
            dir,
            aux,
            sops,
            state,
            stranger,
        };
        s.write("main.tf", main_tf);
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    /// `sops -e` (the real one) of `plain`, named `name`, into the stack.
    fn sops_encrypt(&self, name: &str, plain: &str) {
        let scratch = self.aux.path().join("plain").join(name);
        std::fs::create_dir_all(scratch.parent().unwrap()).unwrap();
        std::fs::write(&scratch, plain).unwrap();
        let out = Command::new(plumb_testenv::tool_path("sops"))
            .args(["-e", "--age", &self.sops.recipient])
            .arg(&scratch)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&scratch).unwrap();
        std::fs::write(self.path().join(name), &out.stdout).unwrap();
    }

    /// `plumb infra ARGS` with `env` (names to values) and nothing else of
    /// the caller's keys.
    fn run_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
        c.arg("infra")
            .arg(format!("-chdir={}", self.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .env("HOME", self.aux.path().join("home"))
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("PLUMB_STATE_AGE_KEY_FILE")
            .env_remove("PLUMB_LOG")
            .env("RUST_LOG", "debug");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// With the SOPS key and the state key.
    fn run(&self, args: &[&str]) -> Run {
        self.run_env(
            args,
            &[
                ("SOPS_AGE_KEY_FILE", &self.sops.file),
                ("PLUMB_STATE_AGE_KEY_FILE", &self.state.file),
            ],
        )
    }

    fn init(&self) {
        let mirror = infra_tools(&["mirror"], "the plugin mirror");
        self.run(&["init", &format!("-plugin-dir={mirror}")]).ok();
    }

    fn state_bytes(&self) -> Vec<u8> {
        std::fs::read(self.path().join("terraform.tfstate")).unwrap()
    }

    /// The stored state, decrypted here with the state key.
    fn open_state(&self, stored: &[u8]) -> serde_json::Value {
        open_envelope(stored, &self.state.keys)
    }

    /// Every file of the stack outside `.terraform`, searched for `needles`.
    #[track_caller]
    fn assert_files_hide(&self, needles: &[&str]) {
        for (path, bytes) in files(self.path()) {
            for n in needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{n:?} is stored in {}",
                    path.display()
                );
            }
        }
    }
}

/// Every file under `dir` but `.terraform`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".terraform") {
                continue;
            }
            if p.is_dir() {
                pending.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The Terraform state inside an encrypted state envelope.
fn open_envelope(stored: &[u8], keys: &Keyring) -> serde_json::Value {
    let envelope: serde_json::Value = serde_json::from_slice(stored).unwrap();
    assert_eq!(envelope["encryption_version"], "plumb-age-v1", "{envelope}");
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(envelope["encrypted_data"].as_str().unwrap())
        .unwrap();
    let plain = plumb_secrets::sealed::open(keys, &sealed).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(state["serial"], envelope["serial"]);
    assert_eq!(state["lineage"], envelope["lineage"]);
    state
}

/// Every string of eight characters or more among the resources'
/// attributes (ids, random results, keepers), which must not be stored in
/// plain text.
fn attribute_strings(state: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if s.len() >= 8 => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for r in state["resources"].as_array().unwrap() {
        for i in r["instances"].as_array().unwrap() {
            walk(&i["attributes"], &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The one attribute `name` of resource type `ty` in a (decrypted) state.
fn attribute(state: &serde_json::Value, ty: &str, name: &str) -> String {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == ty)
        .unwrap()["instances"][0]["attributes"][name]
        .as_str()
        .unwrap()
        .to_string()
}

/// The sensitive attribute paths an instance of type `ty` records.
fn sensitive_paths(state: &serde_json::Value, ty: &str) -> String {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == ty)
        .unwrap()["instances"][0]["sensitive_attributes"]
        .to_string()
}

fn encryption_block(recipient: &str, enforced: bool) -> String {
    format!(
        r#"
terraform {{
  encryption {{
    key_provider "age" "team" {{
      recipients = ["{recipient}"]
    }}
    state {{
      key      = key_provider.age.team
      enforced = {enforced}
    }}
  }}
}}
"#
    )
}

/// A `.tfvars`, a `.tfvars.json` and a `.sops.yaml`, each encrypted by the
/// real sops, feed variables that declare no `sensitive`: every value is
/// masked in plan, apply, show and saved plans, recorded as sensitive in
/// state, and a saved plan applies with the key and is refused without it.
#[test]
fn sops_variable_files_feed_masked_values() {
    let s = Stack::new(
        r#"
variable "db_password" {
  type = string
}
variable "api_token" {
  type = string
}
variable "region" {
  type = string
}
resource "random_id" "r" {
  byte_length = 4
  keepers = {
    a = var.db_password
    b = var.api_token
    c = var.region
  }
}
"#,
    );
    let markers = [M_TFVARS, M_JSON, M_YAML];
    s.sops_encrypt(
        "secrets.auto.tfvars",
        &format!("db_password = \"{M_TFVARS}\"\n"),
    );
    s.sops_encrypt(
        "extra.tfvars.json",
        &format!("{{\"api_token\": \"{M_JSON}\"}}\n"),
    );
    s.sops_encrypt("more.sops.yaml", &format!("region: {M_YAML}\n"));
    // sops wrote a .tfvars as its binary format: a JSON envelope.
    let raw = std::fs::read_to_string(s.path().join("secrets.auto.tfvars")).unwrap();
    assert!(raw.contains("\"data\": \"ENC[AES256_GCM"), "{raw}");
    s.init();
    let files = ["-var-file=extra.tfvars.json", "-var-file=more.sops.yaml"];

    let plan = s
        .run(&[&["plan", "-out=tfplan"][..], &files[..]].concat())
        .ok();
    plan.shows("(sensitive value)")
        .shows("1 to add")
        .hides(&markers);
    s.run(&["show", "tfplan"]).ok().hides(&markers);
    s.assert_files_hide(&markers);

    // The saved plan holds the values sealed for the SOPS files' recipient.
    let no_key = s.run_env(&["apply", "tfplan"], &[]).failed();
    no_key
        .shows("db_password")
        .shows(&s.sops.recipient)
        .hides(&markers);
    assert!(
        !s.path().join("terraform.tfstate").exists(),
        "nothing applied"
    );
    s.run(&["apply", "tfplan"]).ok().hides(&markers);

    let state: serde_json::Value = serde_json::from_slice(&s.state_bytes()).unwrap();
    let paths = sensitive_paths(&state, "random_id");
    assert!(paths.contains("keepers"), "{paths}");
    // Applied with the very values: planning again changes nothing.
    let again = s.run(&[&["plan", "-detailed-exitcode"][..], &files[..]].concat());
    assert_eq!(again.code, 0, "{}", again.all());
    again.hides(&markers);
    s.run(&["show"])
        .ok()
        .shows("(sensitive value)")
        .hides(&markers);
    s.run(&["show", "-json"]).ok().hides(&markers);
    s.run(&["state", "show", "random_id.r"])
        .ok()
        .hides(&markers);

    // A stranger's key, and no key: the file is named, nothing is shown.
    let stranger = s.run_env(&["plan"], &[("SOPS_AGE_KEY_FILE", &s.stranger.file)]);
    stranger
        .failed()
        .shows("secrets.auto.tfvars")
        .shows("no age identity matches")
        .hides(&markers);
    s.run_env(&["plan"], &[])
        .failed()
        .shows("secrets.auto.tfvars")
        .shows("no age key is configured")
        .hides(&markers);
}

/// A SOPS value that does not fit its variable's type is refused without
/// quoting it, as is a tampered variable file.
#[test]
fn sops_variable_errors_never_quote_the_value() {
    let s = Stack::new(
        r#"
variable "port" {
  type = number
}
output "port" {
  value     = var.port
  sensitive = true
}
"#,
    );
    s.sops_encrypt("secrets.auto.tfvars", &format!("port = \"{M_TFVARS}\"\n"));
    s.init();
    s.run(&["plan"])
        .failed()
        .shows("variable \"port\"")
        .shows("sensitive value")
        .hides(&[M_TFVARS]);
    // An encrypted value moved to another key: refused, naming the file.
    let raw = std::fs::read_to_string(s.path().join("secrets.auto.tfvars")).unwrap();
    let tampered = raw.replacen(
        "\"data\": \"ENC[AES256_GCM,data:",
        "\"data\": \"ENC[AES256_GCM,data:AA",
        1,
    );
    assert_ne!(raw, tampered);
    s.write("secrets.auto.tfvars", &tampered);
    s.run(&["plan"])
        .failed()
        .shows("secrets.auto.tfvars")
        .hides(&[M_TFVARS]);
}

/// `sops_file()` reads a YAML document the real sops encrypted: its values
/// reach resources masked, `nonsensitive()` can take out a harmless one,
/// and a tampered file is refused naming it, with nothing changed.
#[test]
fn sops_file_reads_a_sops_yaml_document() {
    let s = Stack::new(
        r#"
locals {
  db = sops_file("db.sops.yaml")
}
resource "random_id" "r" {
  byte_length = 4
  keepers = {
    password = local.db.password
  }
}
output "user" {
  value = nonsensitive(local.db.user)
}
"#,
    );
    s.sops_encrypt(
        "db.sops.yaml",
        &format!("user: app-user\npassword: {M_SOPSFILE}\n"),
    );
    s.init();
    s.run(&["plan"])
        .ok()
        .shows("(sensitive value)")
        .hides(&[M_SOPSFILE]);
    s.run(&["apply", "-auto-approve"])
        .ok()
        .shows("user = \"app-user\"")
        .hides(&[M_SOPSFILE]);
    let state = s.state_bytes();
    let json: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert!(sensitive_paths(&json, "random_id").contains("keepers"));
    assert_eq!(s.run(&["plan", "-detailed-exitcode"]).code, 0);
    s.run(&["show"]).ok().hides(&[M_SOPSFILE]);

    // Tampered: the MAC no longer matches.
    let raw = std::fs::read_to_string(s.path().join("db.sops.yaml")).unwrap();
    let tampered: String = raw
        .lines()
        .map(|l| match l.split_once("lastmodified:") {
            Some((indent, _)) => format!("{indent}lastmodified: \"2001-01-01T00:00:00Z\"\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(raw, tampered);
    s.write("db.sops.yaml", &tampered);
    s.run(&["apply", "-auto-approve"])
        .failed()
        .shows("db.sops.yaml")
        .shows("MAC mismatch")
        .hides(&[M_SOPSFILE]);
    assert_eq!(s.state_bytes(), state, "a refused apply changes nothing");
}

/// The stack of the state encryption tests: a password the provider makes
/// and marks sensitive, a keeper from a SOPS file, a pet as an output.
fn sealed_stack(backend: &str, enforced: bool) -> Stack {
    let s = Stack::new("");
    s.write(
        "main.tf",
        &format!(
            r#"{}{backend}
variable "db_password" {{
  type = string
}}
resource "random_password" "p" {{
  length = 24
  keepers = {{
    k = var.db_password
  }}
}}
resource "random_pet" "pet" {{}}
output "pet" {{
  value = random_pet.pet.id
}}
"#,
            encryption_block(&s.state.recipient, enforced)
        ),
    );
    s.sops_encrypt(
        "secrets.auto.tfvars",
        &format!("db_password = \"{M_TFVARS}\"\n"),
    );
    s
}

/// State sealed at rest in a local file: after apply nothing stored holds
/// the marker or any attribute value; reads decrypt (a second plan changes
/// nothing, show and output work); the password the provider made never
/// shows, not even in debug logs; a stranger's key or no state key is
/// refused naming the state and its recipient, changing nothing.
#[test]
fn local_state_encrypted_at_rest() {
    let s = sealed_stack("", true);
    s.init();
    let apply = s.run(&["apply", "-auto-approve"]).ok();
    let stored = s.state_bytes();
    let state = s.open_state(&stored);
    let password = attribute(&state, "random_password", "result");
    let pet = attribute(&state, "random_pet", "id");
    assert_eq!(password.len(), 24);
    let secrets = [password.as_str(), M_TFVARS];
    apply.shows(&format!("pet = \"{pet}\"")).hides(&secrets);
    // The debug log was on, provider chatter included.
    apply.shows("DEBUG").shows("plumb_tfplugin");

    let mut hidden = attribute_strings(&state);
    hidden.push(M_TFVARS.to_string());
    assert!(hidden.contains(&pet) && hidden.contains(&password));
    let hidden: Vec<&str> = hidden.iter().map(String::as_str).collect();
    s.assert_files_hide(&hidden);
    let envelope: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(envelope["lineage"], state["lineage"]);
    assert_eq!(
        envelope["encryption"]["recipients"][0],
        s.state.recipient.as_str()
    );

    let plan = s.run(&["plan", "-detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    plan.hides(&secrets);
    s.run(&["show"])
        .ok()
        .shows("(sensitive value)")
        .hides(&secrets);
    s.run(&["show", "-json"]).ok().hides(&secrets);
    s.run(&["state", "show", "random_password.p"])
        .ok()
        .shows("(sensitive value)")
        .hides(&secrets);
    s.run(&["state", "list"]).ok().shows("random_password.p");
    s.run(&["output", "pet"]).ok().shows(&pet);
    s.run(&["destroy", "-auto-approve", "-target=random_pet.pet"])
        .ok()
        .hides(&secrets);
    s.run(&["apply", "-auto-approve"]).ok().hides(&secrets);

    // Wrong and missing state keys (the SOPS key is tried when no state key
    // is given, and it is not a recipient of the state).
    let before = s.state_bytes();
    let wrong = s.run_env(
        &["apply", "-auto-approve"],
        &[
            ("SOPS_AGE_KEY_FILE", &s.sops.file),
            ("PLUMB_STATE_AGE_KEY_FILE", &s.stranger.file),
        ],
    );
    wrong
        .failed()
        .shows("cannot decrypt state")
        .shows("terraform.tfstate")
        .shows(&s.state.recipient)
        .shows("--state-age-key-file")
        .hides(&secrets);
    let missing = s.run_env(&["plan"], &[("SOPS_AGE_KEY_FILE", &s.sops.file)]);
    missing
        .failed()
        .shows("none of the given identities matches")
        .shows(&s.state.recipient);
    assert_eq!(s.state_bytes(), before, "a refused run changes nothing");
    assert!(!s.path().join(".terraform.tfstate.lock.info").exists());
}

/// `enforced = true` refuses a plaintext state; `enforced = false` reads it
/// and the next apply (even with nothing to change) writes it sealed, the
/// backup too; removing the block then refuses the encrypted state.
#[test]
fn plaintext_state_refused_when_enforced_and_migrated_when_not() {
    let s = Stack::new("resource \"random_pet\" \"pet\" {}\n");
    s.init();
    s.run(&["apply", "-auto-approve"]).ok();
    let plain = s.state_bytes();
    let pet = {
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        attribute(&v, "random_pet", "id")
    };
    assert!(String::from_utf8_lossy(&plain).contains(&pet));

    let body = "resource \"random_pet\" \"pet\" {}\n";
    s.write(
        "main.tf",
        &format!("{}{body}", encryption_block(&s.state.recipient, true)),
    );
    s.run(&["plan"])
        .failed()
        .shows("is not encrypted")
        .shows("enforced = false");
    assert_eq!(s.state_bytes(), plain, "a refusal changes nothing");

    s.write(
        "main.tf",
        &format!("{}{body}", encryption_block(&s.state.recipient, false)),
    );
    s.run(&["plan"]).ok().shows("stored in plain text");
    s.run(&["apply", "-auto-approve"]).ok();
    let sealed = s.state_bytes();
    assert_eq!(attribute(&s.open_state(&sealed), "random_pet", "id"), pet);
    s.assert_files_hide(&[&pet]);
    let plan = s.run(&["plan", "-detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(!plan.all().contains("plain text"), "{}", plan.all());

    s.write("main.tf", body);
    s.run(&["plan"])
        .failed()
        .shows("is encrypted")
        .shows("no state encryption")
        .shows(&s.state.recipient);
}

/// State sealed at rest in PostgreSQL: the state row and the journal rows
/// hold no attribute value, the serial and lineage columns stay readable,
/// a second plan changes nothing, and a stranger's key is refused.
#[test]
fn postgres_state_encrypted_at_rest() {
    let pg = postgres::TestPostgres::start();
    let backend = format!(
        "terraform {{\n  backend \"pg\" {{\n    conn_str = \"{}\"\n  }}\n}}\n",
        pg.conn_str()
    );
    let s = sealed_stack(&backend, true);
    s.init();
    s.run(&["apply", "-auto-approve"]).ok().hides(&[M_TFVARS]);
    assert!(!s.path().join("terraform.tfstate").exists());
    let psql = |sql: &str| -> String {
        let out = Command::new("psql")
            .arg(pg.conn_str())
            .args(["-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let data = psql("SELECT data FROM plumb_states");
    let state = s.open_state(data.trim().as_bytes());
    let columns = psql("SELECT serial || ' ' || lineage FROM plumb_states");
    assert_eq!(
        columns.trim(),
        format!("{} {}", state["serial"], state["lineage"].as_str().unwrap())
    );
    let password = attribute(&state, "random_password", "result");
    let mut hidden = attribute_strings(&state);
    hidden.push(M_TFVARS.to_string());
    let stored = format!("{data}{}", psql("SELECT record FROM plumb_state_journal"));
    for h in &hidden {
        assert!(
            !stored.contains(h.as_str()),
            "{h:?} is stored in PostgreSQL"
        );
    }
    let plan = s.run(&["plan", "-detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    plan.hides(&[&password, M_TFVARS]);
    s.run_env(
        &["plan"],
        &[
            ("SOPS_AGE_KEY_FILE", &s.sops.file),
            ("PLUMB_STATE_AGE_KEY_FILE", &s.stranger.file),
        ],
    )
    .failed()
    .shows("cannot decrypt state pg:default")
    .shows(&s.state.recipient);
    assert_eq!(
        psql("SELECT data FROM plumb_states"),
        data,
        "nothing changed"
    );
}
