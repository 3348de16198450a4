//! The language's built-in functions, registered in one table.
//!
//! Every family of functions (strings, collections, numbers, encodings, the
//! file system, SOPS files, dates and times, hashes, IP networks, type
//! conversion) is a module that lists its functions as [`Function`] entries
//! beside their implementations. This module gathers those tables: [`call`] looks a
//! name up there and [`names`] lists them, so the names plumb accepts can
//! never drift from what it implements.
//!
//! Every function receives evaluated arguments. Unless its entry says
//! otherwise ([`Arguments`]), an unknown argument makes the result unknown
//! and a sensitive argument makes the result sensitive.

pub mod builtin;
pub mod collection;
pub mod conversion;
pub mod datetime;
pub mod encoding;
pub mod filesystem;
pub mod hash;
pub mod network;
pub mod numeric;
pub mod sops;
pub mod string;

use std::collections::HashMap;
use std::sync::LazyLock;

use plumb_tfplugin::Value;

pub use builtin::{
    Arguments, CallContext, Function, FunctionError, Implementation, Kind, TemplateRenderer,
};

/// Every family's table.
const FAMILIES: &[&[Function]] = &[
    string::FUNCTIONS,
    collection::FUNCTIONS,
    numeric::FUNCTIONS,
    encoding::FUNCTIONS,
    filesystem::FUNCTIONS,
    sops::FUNCTIONS,
    datetime::FUNCTIONS,
    hash::FUNCTIONS,
    network::FUNCTIONS,
    conversion::FUNCTIONS,
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Function>> = LazyLock::new(|| {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .map(|f| (f.name, f))
        .collect()
});

/// The built-in function called `name`.
pub fn lookup(name: &str) -> Option<&'static Function> {
    BY_NAME.get(name).copied()
}

/// Every built-in function's name, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = BY_NAME.keys().copied().collect();
    names.sort_unstable();
    names
}

/// Calls built-in `name` with evaluated arguments.
pub fn call(
    name: &str,
    args: Vec<Value>,
    context: &CallContext<'_>,
) -> Result<Value, FunctionError> {
    let Some(Function {
        kind: Kind::Values { arguments, run },
        ..
    }) = lookup(name)
    else {
        // As for any function, unknown arguments make an unknown result
        // before anything else is looked at. try() and can() take
        // expressions, so the evaluator runs them and never calls them here.
        if args.iter().any(|a| !a.is_wholly_known()) {
            return Ok(Value::Unknown);
        }
        return Err(FunctionError::Unknown {
            name: name.to_string(),
            implemented: names().join(", "),
        });
    };
    match arguments {
        Arguments::Known => builtin::with_known_arguments(&args, context, *run),
        Arguments::MaybeUnknown => builtin::with_unmarked_arguments(&args, context, *run),
        Arguments::AsGiven => run(&args, context),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// Templates are the evaluator's; these tests never render one.
    struct NoTemplates;
    impl TemplateRenderer for NoTemplates {
        fn render(
            &self,
            _: &str,
            _: BTreeMap<String, Value>,
            _: &CallContext<'_>,
        ) -> Result<Value, FunctionError> {
            Err("no templates here".into())
        }
    }

    fn call_in(dir: &Path, name: &str, args: Vec<Value>) -> Result<Value, FunctionError> {
        let context = CallContext {
            module_dir: dir,
            home: None,
            sops_keys: None,
            templates: &NoTemplates,
        };
        call(name, args, &context)
    }

    fn called(name: &str, args: Vec<Value>) -> Value {
        call_in(Path::new("."), name, args).unwrap()
    }

    #[test]
    fn covers_at_least_forty_functions() {
        let names = names();
        assert!(names.len() >= 40);
        let registered: usize = FAMILIES.iter().map(|family| family.len()).sum();
        assert_eq!(registered, names.len(), "a name is registered twice");
        for n in names {
            if matches!(n, "try" | "can") {
                continue;
            }
            let err = call_in(Path::new("."), n, vec![])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !err.contains("there is no function"),
                "{n} is listed but missing"
            );
        }
    }

    #[test]
    fn hashes_encodings_and_network_functions() {
        let hw = || vec![Value::string("hello world")];
        assert_eq!(
            called("sha1", hw()),
            Value::string("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed")
        );
        assert!(
            called("sha512", hw())
                .as_str()
                .unwrap()
                .starts_with("309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hello world").unwrap();
        let f = |name: &str| call_in(dir.path(), name, vec![Value::string("f.txt")]).unwrap();
        assert_eq!(f("filesha1"), called("sha1", hw()));
        assert_eq!(f("filemd5"), called("md5", hw()));
        assert_eq!(f("filebase64sha256"), called("base64sha256", hw()));
        assert_eq!(f("filebase64sha512"), called("base64sha512", hw()));
        let doc = Value::Map(
            [
                ("name".to_string(), Value::string("web")),
                (
                    "ports".to_string(),
                    Value::List(vec![Value::int(80), Value::int(443)]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let yaml = called("yamlencode", vec![doc]);
        let back: serde_json::Value = serde_saphyr::from_str(yaml.as_str().unwrap()).unwrap();
        assert_eq!(back, serde_json::json!({"name": "web", "ports": [80, 443]}));
        assert_eq!(
            called(
                "cidrsubnets",
                vec![Value::string("10.1.0.0/16"), Value::int(4), Value::int(8)]
            ),
            Value::List(vec![
                Value::string("10.1.0.0/20"),
                Value::string("10.1.16.0/24")
            ])
        );
        assert_eq!(
            called(
                "formatdate",
                vec![
                    Value::string("YYYY-MM-DD"),
                    Value::string("2018-01-02T23:12:01Z")
                ]
            ),
            Value::string("2018-01-02")
        );
        // An unknown argument makes the result unknown, not an error.
        assert_eq!(
            called("cidrhost", vec![Value::Unknown, Value::int(1)]),
            Value::Unknown
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            called("upper", vec![Value::string("ab")]),
            Value::string("AB")
        );
        assert_eq!(
            called(
                "format",
                vec![Value::string("%s-%03d"), Value::string("x"), Value::int(7)]
            ),
            Value::string("x-  7")
        );
        assert_eq!(
            called(
                "join",
                vec![
                    Value::string(","),
                    Value::List(vec![Value::string("a"), Value::string("b")])
                ]
            ),
            Value::string("a,b")
        );
        assert_eq!(
            called(
                "replace",
                vec![
                    Value::string("a-b-c"),
                    Value::string("/-/"),
                    Value::string("_")
                ]
            ),
            Value::string("a_b_c")
        );
        assert_eq!(
            called(
                "substr",
                vec![Value::string("hello"), Value::int(1), Value::int(3)]
            ),
            Value::string("ell")
        );
    }

    #[test]
    fn unknown_and_sensitive_propagate() {
        assert_eq!(called("upper", vec![Value::Unknown]), Value::Unknown);
        assert!(called("upper", vec![Value::string("x").mark_sensitive()]).is_sensitive());
        assert_eq!(
            called(
                "length",
                vec![Value::List(vec![Value::Unknown, Value::Unknown])]
            ),
            Value::int(2)
        );
    }

    #[test]
    fn collection_functions() {
        let l = Value::List(vec![Value::int(3), Value::int(1), Value::int(3)]);
        assert_eq!(
            called("distinct", vec![l.clone()]),
            Value::List(vec![Value::int(3), Value::int(1)])
        );
        assert_eq!(called("sum", vec![l.clone()]), Value::int(7));
        assert_eq!(
            called("max", vec![Value::int(1), Value::int(9)]),
            Value::int(9)
        );
        let m = called(
            "zipmap",
            vec![
                Value::List(vec![Value::string("a")]),
                Value::List(vec![Value::int(1)]),
            ],
        );
        assert_eq!(
            called("keys", vec![m]),
            Value::List(vec![Value::string("a")])
        );
        assert_eq!(
            called("range", vec![Value::int(3)]),
            Value::List(vec![Value::int(0), Value::int(1), Value::int(2)])
        );
    }
}
