//! The ordered tree a SOPS file is made of, read from and written to YAML,
//! JSON and dotenv text.
//!
//! SOPS authenticates values in document order, so the tree keeps map keys in
//! the order the file has them (serde_json's `Map` would sort them). YAML
//! comments are not kept: SOPS leaves them out of the MAC, so a file decrypts
//! the same without them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One value of a SOPS tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` (never encrypted, never authenticated).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes SOPS authenticates for a leaf (None for null and branches).
    pub(crate) fn mac_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Node::Str(s) => Some(s.as_bytes().to_vec()),
            Node::Int(i) => Some(i.to_string().into_bytes()),
            // Go's strconv.FormatFloat(f, 'f', -1, 64): shortest, no exponent;
            // Rust's Display prints the same digits.
            Node::Float(f) => Some(format!("{f}").into_bytes()),
            Node::Bool(b) => Some(if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            }),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v)
            .map(Node::Int)
            .unwrap_or(Node::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Node>()? {
            out.push(v);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out: Vec<(String, Node)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            let key = match k {
                Node::Str(s) => s,
                Node::Int(i) => i.to_string(),
                Node::Bool(b) => b.to_string(),
                Node::Float(f) => f.to_string(),
                Node::Null => "null".into(),
                Node::Seq(_) | Node::Map(_) => {
                    return Err(de::Error::custom("only scalar mapping keys are supported"));
                }
            };
            out.push((key, v));
        }
        Ok(Node::Map(out))
    }
}

/// Parse YAML text: one tree per document. Booleans are YAML 1.2's
/// (`true`/`false` only), as sops reads them: `yes`, `on`, `y` stay strings.
pub(crate) fn parse_yaml(text: &str) -> Result<Vec<Node>, String> {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.with_snippet = false;
    serde_saphyr::from_multiple_with_options::<Node>(text, o)
        .map_err(|e| first_line(&e.to_string()))
}

/// Parse JSON text.
pub(crate) fn parse_json(text: &str) -> Result<Node, String> {
    serde_json::from_str::<Node>(text).map_err(|e| {
        // serde_json's message names line and column, never the content.
        e.to_string()
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// One line of a dotenv file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DotLine {
    /// `#text`.
    Comment(String),
    /// `KEY=value` (value with `\n` escapes resolved).
    Pair(String, String),
}

/// Parse dotenv text as SOPS does: `#` comments, `KEY=VALUE` lines, `\n`
/// escapes; blank lines dropped.
pub(crate) fn parse_dotenv(text: &str) -> Result<Vec<DotLine>, String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            out.push(DotLine::Comment(c.to_string()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=VALUE", i + 1));
        };
        out.push(DotLine::Pair(k.to_string(), v.replace("\\n", "\n")));
    }
    Ok(out)
}

/// Write dotenv lines back.
pub(crate) fn emit_dotenv(lines: &[DotLine]) -> String {
    let mut out = String::new();
    for l in lines {
        match l {
            DotLine::Comment(c) => {
                let _ = writeln!(out, "#{c}");
            }
            DotLine::Pair(k, v) => {
                let _ = writeln!(out, "{k}={}", v.replace('\n', "\\n"));
            }
        }
    }
    out
}

/// SOPS' flattened metadata keys (`age__list_0__map_recipient`) back into a tree.
pub(crate) fn unflatten(entries: &[(String, String)]) -> Node {
    enum Tmp {
        Leaf(String),
        Map(Vec<(String, Tmp)>),
        List(BTreeMap<usize, Tmp>),
    }
    enum Tok {
        Key(String),
        Index(usize),
    }
    fn tokens(key: &str) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut rest = key;
        let mut current = Tok::Key(String::new());
        loop {
            let next_map = rest.find("__map_");
            let next_list = rest.find("__list_");
            let (pos, len, is_list) = match (next_map, next_list) {
                (Some(m), Some(l)) if l < m => (l, 7, true),
                (Some(m), _) => (m, 6, false),
                (None, Some(l)) => (l, 7, true),
                (None, None) => {
                    out.push(finish(current, rest));
                    return out;
                }
            };
            out.push(finish(current, &rest[..pos]));
            rest = &rest[pos + len..];
            current = if is_list {
                Tok::Index(0)
            } else {
                Tok::Key(String::new())
            };
        }
    }
    fn finish(tok: Tok, text: &str) -> Tok {
        match tok {
            Tok::Key(_) => Tok::Key(text.to_string()),
            Tok::Index(_) => Tok::Index(text.parse().unwrap_or(0)),
        }
    }
    fn insert(node: &mut Tmp, toks: &[Tok], value: &str) {
        let Some((first, rest)) = toks.split_first() else {
            return;
        };
        let make = |rest: &[Tok]| match rest.first() {
            None => Tmp::Leaf(value.to_string()),
            Some(Tok::Key(_)) => Tmp::Map(Vec::new()),
            Some(Tok::Index(_)) => Tmp::List(BTreeMap::new()),
        };
        let child = match (node, first) {
            (Tmp::Map(entries), Tok::Key(k)) => {
                if let Some(i) = entries.iter().position(|(ek, _)| ek == k) {
                    &mut entries[i].1
                } else {
                    entries.push((k.clone(), make(rest)));
                    let last = entries.len() - 1;
                    &mut entries[last].1
                }
            }
            (Tmp::List(items), Tok::Index(i)) => items.entry(*i).or_insert_with(|| make(rest)),
            _ => return,
        };
        insert(child, rest, value);
    }
    fn into_node(t: Tmp) -> Node {
        match t {
            Tmp::Leaf(s) => Node::Str(s),
            Tmp::Map(e) => Node::Map(e.into_iter().map(|(k, v)| (k, into_node(v))).collect()),
            Tmp::List(items) => Node::Seq(items.into_values().map(into_node).collect()),
        }
    }
    let mut root = Tmp::Map(Vec::new());
    for (k, v) in entries {
        insert(&mut root, &tokens(k), v);
    }
    into_node(root)
}

/// A metadata tree flattened the way SOPS writes it into dotenv files.
pub(crate) fn flatten(node: &Node, prefix: &str, out: &mut Vec<(String, String)>) {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}__map_{k}")
                };
                flatten_child(v, key, out);
            }
        }
        other => flatten_child(other, prefix.to_string(), out),
    }
}

fn flatten_child(v: &Node, key: String, out: &mut Vec<(String, String)>) {
    match v {
        Node::Map(_) => flatten(v, &key, out),
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_child(item, format!("{key}__list_{i}"), out);
            }
        }
        Node::Str(s) => out.push((key, s.clone())),
        Node::Bool(b) => out.push((key, b.to_string())),
        Node::Int(i) => out.push((key, i.to_string())),
        Node::Float(f) => out.push((key, f.to_string())),
        Node::Null => out.push((key, String::new())),
    }
}

/// Write documents as YAML (block style, two-space indentation, key order
/// kept; multi-line strings as literal blocks where that is exact).
pub(crate) fn emit_yaml(docs: &[Node]) -> String {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match d {
            Node::Map(e) if !e.is_empty() => yaml_map(e, 0, &mut out),
            Node::Seq(s) if !s.is_empty() => yaml_seq(s, 0, &mut out),
            other => {
                out.push_str(&yaml_scalar(other, 0));
                out.push('\n');
            }
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn yaml_map(entries: &[(String, Node)], ind: usize, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            indent(ind, out);
        }
        out.push_str(&yaml_key(k));
        out.push(':');
        yaml_value(v, ind, out);
    }
}

fn yaml_seq(items: &[Node], ind: usize, out: &mut String) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            indent(ind, out);
        }
        out.push('-');
        match v {
            Node::Map(e) if !e.is_empty() => {
                out.push(' ');
                yaml_map(e, ind + 2, out);
            }
            Node::Seq(s) if !s.is_empty() => {
                out.push(' ');
                yaml_seq(s, ind + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&yaml_scalar(other, ind + 2));
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a nested block on the next lines, or ` scalar\n`.
fn yaml_value(v: &Node, ind: usize, out: &mut String) {
    match v {
        Node::Map(e) if !e.is_empty() => {
            out.push('\n');
            indent(ind + 2, out);
            yaml_map(e, ind + 2, out);
        }
        Node::Seq(s) if !s.is_empty() => {
            out.push('\n');
            indent(ind + 2, out);
            yaml_seq(s, ind + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_scalar(other, ind + 2));
            out.push('\n');
        }
    }
}

fn yaml_key(k: &str) -> String {
    if plain_ok(k) {
        k.to_string()
    } else {
        json_string(k)
    }
}

fn yaml_scalar(v: &Node, block_indent: usize) -> String {
    match v {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => yaml_float(*f),
        Node::Str(s) => {
            if plain_ok(s) {
                s.clone()
            } else if let Some(block) = literal_block(s, block_indent) {
                block
            } else {
                json_string(s)
            }
        }
        Node::Map(_) => "{}".into(),
        Node::Seq(_) => "[]".into(),
    }
}

fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else {
        // Debug keeps a `.0` on whole numbers, so the value reads back as a float.
        format!("{f:?}")
    }
}

/// `|` / `|-` for multi-line text whose lines survive a literal block as is.
fn literal_block(s: &str, ind: usize) -> Option<String> {
    if !s.contains('\n') || s.ends_with("\n\n") || s.starts_with([' ', '\n', '\t']) {
        return None;
    }
    if s.chars()
        .any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
    {
        return None;
    }
    let (body, chomp) = match s.strip_suffix('\n') {
        Some(b) => (b, "|"),
        None => (s, "|-"),
    };
    if body.lines().any(|l| l.ends_with(' ')) {
        return None;
    }
    let mut out = chomp.to_string();
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            for _ in 0..ind {
                out.push(' ');
            }
            out.push_str(line);
        }
    }
    Some(out)
}

/// Whether `s` can be written as a plain YAML scalar and read back as the same string.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || first == '_' || first == '/' || first == '.') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./@+".contains(c))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", ".nan", ".inf",
    ]
    .contains(&lower.as_str())
    {
        return false;
    }
    // Anything that could read as a number (1, 1.5, 0x1f, 1e3, .5, 1_000) is quoted.
    !(first.is_ascii_digit()
        || first == '.'
        || s.parse::<f64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o"))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Write one tree as JSON (four-space indentation, key order kept).
pub(crate) fn emit_json(node: &Node) -> String {
    let mut out = String::new();
    json_value(node, 0, &mut out);
    out.push('\n');
    out
}

fn json_value(v: &Node, ind: usize, out: &mut String) {
    match v {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(&b.to_string()),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
        Node::Float(_) => out.push_str("null"),
        Node::Str(s) => out.push_str(&json_string(s)),
        Node::Seq(items) if items.is_empty() => out.push_str("[]"),
        Node::Map(e) if e.is_empty() => out.push_str("{}"),
        Node::Seq(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(ind + 4, out);
                json_value(item, ind + 4, out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(ind, out);
            out.push(']');
        }
        Node::Map(entries) => {
            out.push_str("{\n");
            for (i, (k, item)) in entries.iter().enumerate() {
                indent(ind + 4, out);
                out.push_str(&json_string(k));
                out.push_str(": ");
                json_value(item, ind + 4, out);
                if i + 1 < entries.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(ind, out);
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips_in_order_with_types() {
        let text = "z: 1\na: [x, 2.5, true, null, \"007\", 'yes']\nm:\n  k: |\n    line one\n    line two\n  e: {}\n";
        let docs = parse_yaml(text).unwrap();
        let Node::Map(e) = &docs[0] else { panic!() };
        assert_eq!(e[0].0, "z");
        assert_eq!(e[1].0, "a");
        let back = parse_yaml(&emit_yaml(&docs)).unwrap();
        assert_eq!(back, docs, "{}", emit_yaml(&docs));
    }

    #[test]
    fn json_round_trips_in_order() {
        let text = r#"{"z": 1, "a": {"q": [1, 2.0, "x\ny"], "b": false}}"#;
        let n = parse_json(text).unwrap();
        assert_eq!(parse_json(&emit_json(&n)).unwrap(), n);
        assert!(emit_json(&n).find("\"z\"").unwrap() < emit_json(&n).find("\"a\"").unwrap());
    }

    #[test]
    fn flattened_metadata_unflattens() {
        let md = Node::Map(vec![
            (
                "age".into(),
                Node::Seq(vec![Node::Map(vec![
                    ("recipient".into(), Node::Str("age1x".into())),
                    ("enc".into(), Node::Str("---\nx\n".into())),
                ])]),
            ),
            ("mac".into(), Node::Str("ENC[..]".into())),
        ]);
        let mut flat = Vec::new();
        flatten(&md, "", &mut flat);
        assert_eq!(flat[0].0, "age__list_0__map_recipient");
        assert_eq!(unflatten(&flat), md);
    }

    #[test]
    fn dotenv_escapes_newlines() {
        let lines = parse_dotenv("#c\nA=x\\ny\nB=\n").unwrap();
        assert_eq!(lines[1], DotLine::Pair("A".into(), "x\ny".into()));
        assert_eq!(emit_dotenv(&lines), "#c\nA=x\\ny\nB=\n");
        assert!(parse_dotenv("oops\n").is_err());
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "true",
            "1",
            "1.5",
            "",
            "a: b",
            "#x",
            "ENC[AES256_GCM,data:x]",
            " x",
            "~",
        ] {
            let docs = vec![Node::Map(vec![("k".into(), Node::Str(s.into()))])];
            assert_eq!(parse_yaml(&emit_yaml(&docs)).unwrap(), docs, "{s:?}");
        }
    }
}
