//! `sops_file(path)`: a SOPS-encrypted file's decrypted document, marked
//! sensitive — plumb's counterpart of the `carlpett/sops` provider's
//! `sops_file` data source, without a provider.
//!
//! The path is read against the module's directory, like `file()`. The
//! file's name chooses its format as sops chooses it: `.yaml`/`.yml` and
//! `.json` decode to an object (or whatever the document's top level is),
//! `.env` to a map of strings, anything else (binary) to a string. The file
//! is decrypted in memory with the caller's age identities and its MAC is
//! checked; the whole result carries the sensitive mark, so plans, state
//! output and errors show `(sensitive value)`. Errors name the file and never
//! a value.

use std::collections::BTreeMap;
use std::path::Path;

use plumb_secrets::sops::{self, Format};
use plumb_tfplugin::Value;

use super::builtin::{CallContext, Function, FunctionError, functions, module_path, only, text};

/// The SOPS functions.
pub const FUNCTIONS: &[Function] = functions![sops_file];

fn sops_file(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    let given = text(only(args)?)?;
    let Some(keys) = context.sops_keys else {
        return Err(
            "SOPS files are not read here (variable defaults and .tfvars files take literal values)"
                .into(),
        );
    };
    let path = module_path(context, &given);
    let bytes = std::fs::read(&path).map_err(|source| FunctionError::Read {
        path: path.clone(),
        source,
    })?;
    let format = Format::from_path(Path::new(&given));
    if !sops::is_sops(&bytes, format) {
        return Err(format!(
            "{given} is not a SOPS file (no `sops` section with `mac` and `version`); use file() for plain files"
        )
        .into());
    }
    let plain = sops::decrypt(&given, &bytes, format, keys).map_err(|e| e.to_string())?;
    Ok(decode(&given, format, plain.bytes())?.mark_sensitive())
}

/// The decrypted document as a value; errors say where, never what.
pub(crate) fn decode(file: &str, format: Format, plain: &[u8]) -> Result<Value, String> {
    let json = match format {
        Format::Json => serde_json::from_slice::<serde_json::Value>(plain).map_err(|e| {
            format!(
                "{file}: the decrypted document is not JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        })?,
        Format::Yaml => {
            let text = std::str::from_utf8(plain)
                .map_err(|_| format!("{file}: the decrypted document is not UTF-8"))?;
            serde_saphyr::from_str::<serde_json::Value>(text).map_err(|_| {
                format!("{file}: the decrypted document is not one YAML document of plain values")
            })?
        }
        Format::Dotenv => {
            let text = std::str::from_utf8(plain)
                .map_err(|_| format!("{file}: the decrypted document is not UTF-8"))?;
            return Ok(Value::Map(dotenv(text)));
        }
        Format::Binary => {
            return String::from_utf8(plain.to_vec())
                .map(Value::String)
                .map_err(|_| format!("{file}: the decrypted file is not UTF-8 text"));
        }
    };
    Ok(plumb_tfplugin::value::untyped_from_json(&json))
}

/// `KEY=VALUE` lines (as sops writes them back) as a map of strings.
pub(crate) fn dotenv(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), Value::String(v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn decodes_each_format() {
        let v = decode(
            "a.yaml",
            Format::Yaml,
            b"db:\n  password: hunter2\nport: 5432\n",
        )
        .unwrap();
        assert_eq!(
            v.get_attr("db").and_then(|d| d.get_attr("password")),
            Some(&Value::string("hunter2"))
        );
        let v = decode("a.json", Format::Json, br#"{"n": [1, 2]}"#).unwrap();
        assert!(matches!(v.get_attr("n"), Some(Value::List(l)) if l.len() == 2));
        let v = decode("a.env", Format::Dotenv, b"# c\nA=1\nB=x=y\n").unwrap();
        assert_eq!(v.get_attr("B"), Some(&Value::string("x=y")));
        let v = decode("a.txt", Format::Binary, b"raw").unwrap();
        assert_eq!(v, Value::string("raw"));
    }

    #[test]
    fn errors_never_quote_the_document() {
        let e = decode("a.json", Format::Json, b"{\"k\": hunter2}").unwrap_err();
        assert!(e.contains("a.json") && !e.contains("hunter2"), "{e}");
        let e = decode("a.yaml", Format::Yaml, b"k: [hunter2\n").unwrap_err();
        assert!(e.contains("a.yaml") && !e.contains("hunter2"), "{e}");
    }
}
