use super::*;

/// A deterministic pseudo-random string over `alphabet` (so fake tokens are
/// built at run time and this file itself holds none).
fn chars(seed: u64, n: usize, alphabet: &str) -> String {
    let a: Vec<char> = alphabet.chars().collect();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            a[(x % a.len() as u64) as usize]
        })
        .collect()
}

const UPPER_DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn aws() -> String {
    format!("{}IA{}", "AK", chars(1, 16, UPPER_DIGITS))
}
fn github() -> String {
    format!("gh{}_{}", "p", chars(2, 36, ALNUM))
}
fn gitlab() -> String {
    format!("gl{}-{}", "pat", chars(3, 20, ALNUM))
}
fn slack() -> String {
    format!(
        "xo{}-{}-{}-{}",
        "xb",
        chars(4, 12, "0123456789"),
        chars(5, 12, "0123456789"),
        chars(6, 24, ALNUM)
    )
}
fn jwt() -> String {
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        e.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        e.encode(br#"{"sub":"1234567890","name":"plumb"}"#),
        chars(7, 43, ALNUM)
    )
}
fn pem() -> String {
    format!("-----BEGIN RSA {} KEY-----", "PRIVATE")
}
fn password() -> String {
    format!("{}!{}", chars(8, 10, ALNUM), chars(9, 6, ALNUM))
}

fn scan(files: &[(&str, &str)]) -> Vec<Finding> {
    let mut s = Scan::new();
    for (p, t) in files {
        s.add_file(p, t.as_bytes());
    }
    s.finish()
}

fn rules(found: &[Finding]) -> Vec<Rule> {
    found.iter().map(|f| f.rule).collect()
}

#[test]
fn every_shape_is_found_where_it_is() {
    let cases = [
        (aws(), Rule::AwsAccessKey),
        (github(), Rule::GithubToken),
        (gitlab(), Rule::GitlabToken),
        (slack(), Rule::SlackToken),
        (jwt(), Rule::Jwt),
        (pem(), Rule::PrivateKey),
    ];
    for (token, rule) in cases {
        let text = format!("apiVersion: v1\nkind: ConfigMap\ndata:\n  setting: \"{token}\"\n");
        let found = scan(&[("cm.yaml", &text)]);
        assert_eq!(rules(&found), vec![rule], "{rule}: {found:?}");
        assert_eq!((found[0].line, found[0].column), (4, 13), "{rule}");
    }
}

#[test]
fn near_misses_are_not_findings() {
    let near = [
        format!("AKIA{}", chars(1, 12, UPPER_DIGITS)), // too short
        format!("AKIA{}EXAMPLE", "IOSFODNN7"),         // AWS's documented example
        format!("ghp_{}", chars(2, 20, ALNUM)),        // too short
        format!("glpat_{}", chars(3, 20, ALNUM)),      // wrong separator
        format!("xoxq-{}-{}", chars(4, 12, ALNUM), chars(5, 12, ALNUM)), // no such kind
        "-----BEGIN PUBLIC KEY-----".to_string(),
        "-----BEGIN CERTIFICATE-----".to_string(),
        // JWT-shaped, but the header is not JSON with alg.
        format!(
            "eyJ{}.{}.{}",
            chars(6, 20, ALNUM),
            chars(7, 20, ALNUM),
            chars(8, 20, ALNUM)
        ),
    ];
    for token in near {
        let text = format!("kind: ConfigMap\ndata:\n  setting: \"{token}\"\n");
        assert_eq!(scan(&[("cm.yaml", &text)]), vec![], "{token}");
    }
}

#[test]
fn generic_passwords_need_a_secret_key_entropy_and_length() {
    let p = password();
    let found = scan(&[("v.yaml", &format!("db:\n  adminPassword: {p}\n"))]);
    assert_eq!(rules(&found), vec![Rule::GenericPassword]);
    assert_eq!((found[0].line, found[0].column), (2, 18));
    let found = scan(&[("v.json", &format!("{{\n  \"api_key\": \"{p}\",\n}}"))]);
    assert_eq!(rules(&found), vec![Rule::GenericPassword]);
    assert_eq!((found[0].line, found[0].column), (2, 15));
    let misses = [
        format!("secretName: {p}"),                   // names a Secret
        "password: short1!".to_string(),              // < 8 characters
        "password: aaaaaaaaaaaaaaaaaaaa".to_string(), // no entropy
        "password: my-db-credentials".to_string(),    // one case, no digits
        "password: ${DB_PASSWORD}".to_string(),       // template
        "password: \"{{ .Values.password }}\"".to_string(),
        "password: vault://kv/data/app#password".to_string(),
        "password: changeme-Please-1".to_string(), // placeholder
        format!("tokenPath: /var/run/{p}"),
        "token: |".to_string(),
    ];
    for m in misses {
        assert_eq!(scan(&[("v.yaml", &format!("{m}\n"))]), vec![], "{m}");
    }
}

#[test]
fn entropy_is_bits_per_character() {
    assert_eq!(shannon_entropy(""), 0.0);
    assert_eq!(shannon_entropy("aaaa"), 0.0);
    assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    assert!((shannon_entropy("0123456789abcdef") - 4.0).abs() < 1e-9);
    assert!(shannon_entropy(&password()) > ENTROPY_THRESHOLD);
}

#[test]
fn plaintext_secrets_are_found_per_key_and_sops_files_pass() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  user: YWRtaW4=\nstringData:\n  password: hunter22\n";
    let found = scan(&[("app/secret.yaml", text)]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, f.line, f.column))
            .collect::<Vec<_>>(),
        vec![
            (Rule::PlaintextSecret, 11, 9),
            (Rule::PlaintextSecret, 13, 13)
        ]
    );
    assert!(
        found[0]
            .to_string()
            .starts_with("app/secret.yaml:11:9: plaintext-secret: Secret db: data key \"user\"")
    );
    let sops = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: ENC[AES256_GCM,data:3q2+7w==,iv:AAAA,tag:BBBB,type:str]\nsops:\n  mac: ENC[AES256_GCM,data:abcd,iv:AAAA,tag:BBBB,type:str]\n  version: 3.13.0\n";
    assert_eq!(scan(&[("secret.yaml", sops)]), vec![]);
    // ENC-shaped values without SOPS metadata are not encrypted files.
    let fake = sops.split("sops:").next().unwrap_or_default();
    assert_eq!(
        rules(&scan(&[("secret.yaml", fake)])),
        vec![Rule::PlaintextSecret]
    );
    // An empty Secret holds nothing.
    assert_eq!(
        scan(&[("s.yaml", "kind: Secret\nmetadata:\n  name: e\ndata: {}\n")]),
        vec![]
    );
}

#[test]
fn secret_generators_with_literals_or_plain_files_are_found() {
    let k = "resources: []\nsecretGenerator:\n- name: a\n  literals:\n  - user=admin\n- name: b\n  files:\n  - creds.txt\n  - key=enc.json\n  envs:\n  - ../shared/app.env\n";
    let enc =
        "{\"data\": \"ENC[AES256_GCM,data:zz,iv:a,tag:b,type:str]\", \"sops\": {\"mac\": \"x\"}}";
    let found = scan(&[
        ("k/kustomization.yaml", k),
        ("k/creds.txt", "plain"),
        ("k/enc.json", enc),
        ("shared/app.env", "A=b\n"),
    ]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.file.as_str(), f.rule, f.line, f.column))
            .collect::<Vec<_>>(),
        vec![
            ("k/kustomization.yaml", Rule::PlaintextSecretGenerator, 5, 5),
            ("k/kustomization.yaml", Rule::PlaintextSecretGenerator, 8, 5),
            (
                "k/kustomization.yaml",
                Rule::PlaintextSecretGenerator,
                11,
                5
            ),
        ]
    );
}

#[test]
fn allows_need_a_reason() {
    let t = github();
    // A comment on the line, and one alone above the line.
    let text = format!(
        "a: {t} # plumb:allow-secret github-token test fixture\n# plumb:allow-secret github-token revoked token kept for docs\nb: {t}\nc: {t} # plumb:allow-secret github-token\n"
    );
    let found = scan(&[("x.yaml", &text)]);
    assert_eq!(
        found.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(),
        vec![(Rule::GithubToken, 4), (Rule::BadAllow, 4)]
    );
    // An annotation covers its object only.
    let text = format!(
        "kind: ConfigMap\nmetadata:\n  annotations:\n    plumb.dev/allow-secrets: \"github-token,jwt — public demo token\"\ndata:\n  t: {t}\n---\nkind: ConfigMap\ndata:\n  t: {t}\n"
    );
    let found = scan(&[("x.yaml", &text)]);
    assert_eq!(
        found.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(),
        vec![(Rule::GithubToken, 10)]
    );
    let text = format!(
        "kind: ConfigMap\nmetadata:\n  annotations:\n    plumb.dev/allow-secrets: github-token\ndata:\n  t: {t}\n"
    );
    assert_eq!(
        rules(&scan(&[("x.yaml", &text)])),
        vec![Rule::BadAllow, Rule::GithubToken]
    );
    // An ignore file, relative to its directory.
    let ignore =
        "# fixtures\nx.yaml:1 github-token fixture for the docs\nother.yaml github-token\n";
    let found = scan(&[
        ("app/.plumbignore-secrets", ignore),
        ("app/x.yaml", &format!("a: {t}\nb: {t}\n")),
    ]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.file.as_str(), f.rule, f.line))
            .collect::<Vec<_>>(),
        vec![
            ("app/.plumbignore-secrets", Rule::BadAllow, 3),
            ("app/x.yaml", Rule::GithubToken, 2)
        ]
    );
}

#[test]
fn terraform_literals_are_found_unless_marked() {
    let p = password();
    let tf = format!(
        "variable \"db_password\" {{\n  type      = string\n  sensitive = true\n  default   = \"{p}\"\n}}\n\nvariable \"region\" {{\n  default = \"eu-west-1\"\n}}\n\nresource \"terraform_data\" \"db\" {{\n  input = {{\n    user = \"admin\"\n    password = \"{p}\"\n  }}\n  master_password = \"short\"\n  token = var.db_password\n  api_key = \"{p}\" # plumb:allow-secret tf-literal-secret rotated test key\n}}\n"
    );
    let found = scan(&[("main.tf", &tf)]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, f.line, f.column))
            .collect::<Vec<_>>(),
        vec![
            (Rule::TfLiteralSecret, 4, 16),
            (Rule::TfLiteralSecret, 14, 17),
            (Rule::TfLiteralSecret, 16, 22)
        ]
    );
    let found = scan(&[(
        "prod.tfvars",
        &format!("region = \"eu\"\ndb_password = \"{p}\"\n"),
    )]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, f.line, f.column))
            .collect::<Vec<_>>(),
        vec![(Rule::TfLiteralSecret, 2, 16)]
    );
    let found = scan(&[(
        "c.tf",
        &format!("provider \"aws\" {{\n  access_key = \"{}\"\n}}\n", aws()),
    )]);
    assert_eq!(
        rules(&found),
        vec![Rule::AwsAccessKey, Rule::TfLiteralSecret]
    );
}

#[test]
fn rendered_objects_are_located_in_their_source_and_secrets_skipped() {
    let t = github();
    let source = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        env:\n        - name: GH_TOKEN\n          value: \"{t}\"\n"
    );
    let mut s = Scan::new();
    let object: Value = serde_json::json!({
        "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "GH_TOKEN", "value": t}]}]}}}
    });
    let origin = Origin {
        file: "chart/out.yaml".into(),
        line: 1,
        column: 1,
    };
    s.add_manifest(&object, &origin);
    let secret =
        serde_json::json!({"kind": "Secret", "metadata": {"name": "x"}, "stringData": {"t": t}});
    s.add_manifest(&secret, &origin);
    // Not in the files: located at the object.
    let found = s.finish();
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, f.line, f.column))
            .collect::<Vec<_>>(),
        vec![(Rule::GithubToken, 1, 1)]
    );
    assert!(found[0].hint.starts_with("Deployment/web: a GitHub token"));
    let mut s = Scan::new();
    s.add_file("chart/out.yaml", source.as_bytes());
    s.add_manifest(&object, &origin);
    let found = s.finish();
    // The source file's own finding and the rendered one are the same finding.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].column), (12, 19));
}

#[test]
fn a_finding_never_shows_its_value() {
    let values = [aws(), github(), gitlab(), slack(), jwt(), password()];
    let mut text = String::from("kind: ConfigMap\ndata:\n");
    for (i, v) in values.iter().enumerate() {
        text.push_str(&format!("  password{i}: \"{v}\"\n"));
    }
    text.push_str(&format!(
        "---\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: \"{}\"\n",
        values[5]
    ));
    let tf = format!(
        "variable \"db_password\" {{\n  default = \"{}\"\n}}\n",
        values[5]
    );
    let found = scan(&[("a.yaml", &text), ("main.tf", &tf)]);
    assert!(found.len() >= 8, "{found:?}");
    let shown = [
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::to_string(&found).unwrap_or_default(),
        sarif(&found, true).to_string(),
    ];
    for out in shown {
        for v in &values {
            assert!(!out.contains(v.as_str()), "a value leaked");
            assert!(!out.contains(&v[..8]), "a prefix leaked");
        }
    }
}

#[test]
fn sarif_is_2_1_0_with_rules_and_regions() {
    let found = scan(&[("d/x.yaml", &format!("k: {}\n", github()))]);
    let log = sarif(&found, true);
    assert_eq!(log["version"], "2.1.0");
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "github-token");
    assert_eq!(result["level"], "error");
    let loc = &result["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "d/x.yaml");
    assert_eq!(loc["region"]["startLine"], 1);
    assert_eq!(loc["region"]["startColumn"], 4);
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .map(Vec::len);
    assert_eq!(rules, Some(Rule::ALL.len()));
}

#[test]
fn modes_parse_and_the_stricter_wins() {
    assert_eq!("warn".parse::<Mode>(), Ok(Mode::Warn));
    assert!("block".parse::<Mode>().is_err());
    assert_eq!(Mode::Warn.stricter(Mode::Refuse), Mode::Refuse);
    assert_eq!(Mode::Warn.stricter(Mode::Allow), Mode::Warn);
    assert_eq!(Mode::default(), Mode::Refuse);
}

#[test]
fn kustomizations_name_what_they_read() {
    let k = "resources:\n- ../base\n- deploy.yaml\n- https://example.com/x.yaml\npatches:\n- path: patch.yaml\nsecretGenerator:\n- name: s\n  files:\n  - key=../../shared/creds.txt\n";
    assert_eq!(
        kustomize_references("apps/prod/kustomization.yaml", k),
        vec![
            "apps/base",
            "apps/prod/deploy.yaml",
            "apps/prod/patch.yaml",
            "shared/creds.txt"
        ]
    );
    assert_eq!(
        kustomize_references("kustomization.yaml", "resources:\n- ../../etc\n"),
        Vec::<String>::new()
    );
}
