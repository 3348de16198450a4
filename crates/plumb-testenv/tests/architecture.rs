//! docs/ARCHITECTURE.md draws the crate graph; this keeps the drawing true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The `crates` block of ARCHITECTURE.md: `crate → dep dep ...` per line.
fn documented(text: &str) -> Graph {
    let block = text
        .split("```crates\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```crates block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (name, deps) = line.split_once('→').expect("each line is `crate → deps`");
            (
                name.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// The plumb crates each crate's `[dependencies]` table names.
fn declared() -> Graph {
    let crates = plumb_testenv::repo_root().join("crates");
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .unwrap();
        let mut section = String::new();
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.trim().to_string();
            } else if section == "[dependencies]"
                && let Some(dep) = line.split(['.', ' ', '=']).next()
                && dep.starts_with("plumb-")
            {
                deps.insert(dep.to_string());
            }
        }
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let doc =
        std::fs::read_to_string(plumb_testenv::repo_root().join("docs/ARCHITECTURE.md")).unwrap();
    assert_eq!(documented(&doc), declared());
}
