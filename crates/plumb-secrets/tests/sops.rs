//! plumb's SOPS files against the real `sops` (built by testenv/setup.d/60-secrets):
//! files sops encrypted decrypt in plumb to the originals, files plumb
//! encrypted decrypt in sops to the originals, and tampering is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use plumb_secrets::sops::{
    self, EncryptOptions, Format, Keyring, Rules, SopsError, generate_identity,
};

struct Env {
    dir: tempfile::TempDir,
    key_file: PathBuf,
    recipient: String,
    keys: Keyring,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (secret, recipient) = generate_identity();
    let key_file = dir.path().join("keys.txt");
    std::fs::write(&key_file, format!("# test key\n{}\n", &*secret)).unwrap();
    let keys = Keyring::from_text(&secret, "test").unwrap();
    Env {
        dir,
        key_file,
        recipient,
        keys,
    }
}

impl Env {
    fn sops(&self, args: &[&str]) -> std::process::Output {
        Command::new(plumb_testenv::tool_path("sops"))
            .args(args)
            .env("SOPS_AGE_KEY_FILE", &self.key_file)
            .env_remove("SOPS_AGE_KEY")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// `sops -e` of `plain` written as `name`; the encrypted bytes.
    fn sops_encrypt(&self, name: &str, plain: &[u8], extra: &[&str]) -> Vec<u8> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, plain).unwrap();
        let mut args = vec!["-e", "--age", &self.recipient];
        args.extend_from_slice(extra);
        let p = path.to_str().unwrap();
        args.push(p);
        let out = self.sops(&args);
        assert!(
            out.status.success(),
            "sops -e: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `sops -d` of `enc` written as `name`: the plaintext.
    fn sops_decrypt(&self, name: &str, enc: &[u8]) -> Vec<u8> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, enc).unwrap();
        let out = self.sops(&["-d", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "sops -d {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(enc)
        );
        out.stdout
    }

    fn opts(&self) -> EncryptOptions {
        EncryptOptions {
            age: vec![self.recipient.clone()],
            rules: Rules::default(),
        }
    }
}

fn yaml(bytes: &[u8]) -> serde_json::Value {
    // YAML 1.2 booleans, as sops reads them.
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(std::str::from_utf8(bytes).unwrap(), o).unwrap();
    serde_json::Value::Array(docs)
}

const YAML: &str = "# a comment\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cr3t-marker\n  multi: |\n    line one\n    line two\n  empty: \"\"\nnumbers:\n  port: 5432\n  ratio: 0.25\n  big: 1.0e+21\n  enabled: true\n  off: false\n  nothing: null\nlist:\n  - a\n  - {k: v, n: 3}\n  - [x, y]\ncomment_unencrypted: in clear\n";

#[test]
fn sops_encrypted_yaml_decrypts_in_plumb() {
    let e = env();
    let enc = e.sops_encrypt("s.yaml", YAML.as_bytes(), &[]);
    assert!(!String::from_utf8_lossy(&enc).contains("s3cr3t-marker"));
    assert!(sops::is_sops(&enc, Format::Yaml));
    let plain = sops::decrypt("s.yaml", &enc, Format::Yaml, &e.keys).unwrap();
    assert_eq!(yaml(plain.bytes()), yaml(YAML.as_bytes()));
}

#[test]
fn sops_encrypted_multi_document_yaml_decrypts_in_plumb() {
    let e = env();
    let text = "a: 1\nb: two\n---\nc: [3, four]\n";
    let enc = e.sops_encrypt("m.yaml", text.as_bytes(), &[]);
    let plain = sops::decrypt("m.yaml", &enc, Format::Yaml, &e.keys).unwrap();
    assert_eq!(yaml(plain.bytes()), yaml(text.as_bytes()));
}

#[test]
fn sops_encrypted_json_decrypts_in_plumb() {
    let e = env();
    let text = r#"{"z": "last-first", "a": {"pw": "j-marker", "n": 7, "f": 1.5, "t": true, "l": [1, "x", null]}}"#;
    let enc = e.sops_encrypt("s.json", text.as_bytes(), &[]);
    let plain = sops::decrypt("s.json", &enc, Format::Json, &e.keys).unwrap();
    let got: serde_json::Value = serde_json::from_slice(plain.bytes()).unwrap();
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(text).unwrap()
    );
}

#[test]
fn sops_encrypted_dotenv_decrypts_in_plumb() {
    let e = env();
    let text = "# database\nUSER=app\nPASSWORD=env-marker\nMULTI=a\\nb\nEMPTY=\n";
    let enc = e.sops_encrypt("s.env", text.as_bytes(), &[]);
    let plain = sops::decrypt("s.env", &enc, Format::Dotenv, &e.keys).unwrap();
    assert_eq!(std::str::from_utf8(plain.bytes()).unwrap(), text);
}

#[test]
fn sops_encrypted_binary_decrypts_in_plumb() {
    let e = env();
    let data: Vec<u8> = (0..=255u8).chain(*b"bin-marker\n").collect();
    let enc = e.sops_encrypt("s.bin", &data, &[]);
    let plain = sops::decrypt("s.bin", &enc, Format::Binary, &e.keys).unwrap();
    assert_eq!(plain.bytes(), &data[..]);
}

#[test]
fn plumb_encrypted_files_decrypt_in_sops() {
    let e = env();
    let enc = sops::encrypt("p.yaml", YAML.as_bytes(), Format::Yaml, &e.opts()).unwrap();
    assert!(!String::from_utf8_lossy(&enc).contains("s3cr3t-marker"));
    assert_eq!(yaml(&e.sops_decrypt("p.yaml", &enc)), yaml(YAML.as_bytes()));

    let multi = "a: 1\n---\nb: [x]\n";
    let enc = sops::encrypt("m.yaml", multi.as_bytes(), Format::Yaml, &e.opts()).unwrap();
    assert_eq!(
        yaml(&e.sops_decrypt("m.yaml", &enc)),
        yaml(multi.as_bytes())
    );

    let json = r#"{"z": 1, "a": {"pw": "j", "l": [true, 2.5, null, "s"]}}"#;
    let enc = sops::encrypt("p.json", json.as_bytes(), Format::Json, &e.opts()).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&e.sops_decrypt("p.json", &enc)).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(json).unwrap()
    );

    let env_text = "# comment\nUSER=app\nPASSWORD=x\\ny\n";
    let enc = sops::encrypt("p.env", env_text.as_bytes(), Format::Dotenv, &e.opts()).unwrap();
    assert_eq!(
        String::from_utf8(e.sops_decrypt("p.env", &enc)).unwrap(),
        env_text
    );

    let data: Vec<u8> = (0..=255u8).rev().collect();
    let enc = sops::encrypt("p.bin", &data, Format::Binary, &e.opts()).unwrap();
    assert_eq!(e.sops_decrypt("p.bin", &enc), data);
}

#[test]
fn plumb_rules_are_read_by_sops_and_sops_rules_by_plumb() {
    let e = env();
    let text = "metadata:\n  name: db\ndata:\n  pw: regex-marker\nother: plain\n";
    // plumb writes encrypted_regex; sops decrypts it.
    let mut o = e.opts();
    o.rules.encrypted_regex = Some("^data$".into());
    let enc = sops::encrypt("r.yaml", text.as_bytes(), Format::Yaml, &o).unwrap();
    let s = String::from_utf8(enc.clone()).unwrap();
    assert!(s.contains("name: db") && s.contains("other: plain") && !s.contains("regex-marker"));
    assert_eq!(yaml(&e.sops_decrypt("r.yaml", &enc)), yaml(text.as_bytes()));

    // sops writes encrypted_regex and mac_only_encrypted; plumb decrypts it.
    let enc = e.sops_encrypt(
        "r2.yaml",
        text.as_bytes(),
        &["--encrypted-regex", "^data$", "--mac-only-encrypted"],
    );
    let s = String::from_utf8(enc.clone()).unwrap();
    assert!(
        s.contains("name: db") && s.contains("mac_only_encrypted: true"),
        "{s}"
    );
    let plain = sops::decrypt("r2.yaml", &enc, Format::Yaml, &e.keys).unwrap();
    assert_eq!(yaml(plain.bytes()), yaml(text.as_bytes()));

    // unencrypted_suffix, written by sops: the suffixed key stays clear and
    // changing it breaks the MAC.
    let text = "user_unencrypted: admin\npass: suffix-marker\n";
    let enc = e.sops_encrypt(
        "u.yaml",
        text.as_bytes(),
        &["--unencrypted-suffix", "_unencrypted"],
    );
    let s = String::from_utf8(enc.clone()).unwrap();
    assert!(s.contains("user_unencrypted: admin") && !s.contains("suffix-marker"));
    let plain = sops::decrypt("u.yaml", &enc, Format::Yaml, &e.keys).unwrap();
    assert_eq!(yaml(plain.bytes()), yaml(text.as_bytes()));
    let tampered = s.replace("user_unencrypted: admin", "user_unencrypted: root");
    let err = sops::decrypt("u.yaml", tampered.as_bytes(), Format::Yaml, &e.keys).unwrap_err();
    assert!(matches!(err, SopsError::Mac { .. }), "{err}");

    // mac_only_encrypted written by plumb, read by sops.
    let mut o = e.opts();
    o.rules.mac_only_encrypted = true;
    o.rules.unencrypted_regex = Some("^metadata$".into());
    let text = "metadata:\n  name: x\ndata:\n  pw: y\n";
    let enc = sops::encrypt("mo.yaml", text.as_bytes(), Format::Yaml, &o).unwrap();
    assert_eq!(
        yaml(&e.sops_decrypt("mo.yaml", &enc)),
        yaml(text.as_bytes())
    );
}

fn tamper_mac(enc: &str) -> String {
    // Flip one base64 character of the encrypted MAC's data.
    let at = enc.find("mac: ENC[AES256_GCM,data:").unwrap() + "mac: ENC[AES256_GCM,data:".len();
    let mut b = enc.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[test]
fn tampered_files_are_refused_naming_them() {
    let e = env();
    let enc = String::from_utf8(e.sops_encrypt("t.yaml", YAML.as_bytes(), &[])).unwrap();

    let bad_mac = tamper_mac(&enc);
    let err = sops::decrypt("repo/t.yaml", bad_mac.as_bytes(), Format::Yaml, &e.keys).unwrap_err();
    assert!(matches!(err, SopsError::Mac { .. }), "{err}");
    assert!(err.to_string().starts_with("repo/t.yaml: "), "{err}");
    // sops agrees that the file is broken.
    let p = e.dir.path().join("bad.yaml");
    std::fs::write(&p, &bad_mac).unwrap();
    assert!(!e.sops(&["-d", p.to_str().unwrap()]).status.success());

    // A value swapped for another value of the same file: authenticated by
    // its path, so it does not decrypt in its new place.
    let line = |key: &str| {
        enc.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap()
            .split_once(": ")
            .unwrap()
            .1
            .to_string()
    };
    let swapped = enc.replacen(&line("password:"), &line("kind:"), 1);
    let err = sops::decrypt("repo/t.yaml", swapped.as_bytes(), Format::Yaml, &e.keys).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("repo/t.yaml: value at stringData:password: authentication failed"),
        "{err}"
    );
    assert!(!err.to_string().contains("s3cr3t-marker"));

    // A wrong key.
    let (other, _) = generate_identity();
    let other = Keyring::from_text(&other, "other").unwrap();
    let err = sops::decrypt("repo/t.yaml", enc.as_bytes(), Format::Yaml, &other).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "repo/t.yaml: no age identity matches recipients {}",
            e.recipient
        )
    );
}

#[test]
fn sops_yaml_creation_rules_choose_recipients_for_plumb() {
    let e = env();
    let root = e.dir.path();
    std::fs::create_dir_all(root.join("apps/prod")).unwrap();
    std::fs::write(
        root.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: apps/prod/.*\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n    age: {}\n",
            e.recipient
        ),
    )
    .unwrap();
    let file = root.join("apps/prod/secret.yaml");
    let text = "kind: Secret\nmetadata:\n  name: s\nstringData:\n  k: rule-marker\n";
    std::fs::write(&file, text).unwrap();
    let config = sops::find_config(&file).unwrap();
    assert_eq!(config, root.join(".sops.yaml"));
    let rule = sops::creation_rule(&config, &std::fs::read_to_string(&config).unwrap(), &file)
        .unwrap()
        .unwrap();
    let enc = sops::encrypt("secret.yaml", text.as_bytes(), Format::Yaml, &rule.options).unwrap();
    let s = String::from_utf8(enc.clone()).unwrap();
    assert!(s.contains("name: s") && !s.contains("rule-marker"), "{s}");
    // sops, reading the same .sops.yaml, decrypts it.
    assert_eq!(
        yaml(&e.sops_decrypt("apps/prod/secret.enc.yaml", &enc)),
        yaml(text.as_bytes())
    );
    // And sops, encrypting under the same rule, writes what plumb reads.
    let out = Command::new(plumb_testenv::tool_path("sops"))
        .args(["-e", "apps/prod/secret.yaml"])
        .env("SOPS_AGE_KEY_FILE", &e.key_file)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("encrypted_regex: ^(data|stringData)$"));
    let plain = sops::decrypt("secret.yaml", &out.stdout, Format::Yaml, &e.keys).unwrap();
    assert_eq!(yaml(plain.bytes()), yaml(text.as_bytes()));
}
