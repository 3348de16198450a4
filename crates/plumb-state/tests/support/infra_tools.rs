//! Where the infra tests find the tools `testenv/setup.d/infra-tools` knows
//! (PostgreSQL's binaries, the plugin mirror, one provider binary). Shared by
//! the state, tfplugin and `plumb infra` tests, which include this file by
//! path; a tool that is missing fails the test with what to run.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// The one line `infra-tools ARGS` prints; `missing` starts the failure
/// message when it cannot say.
pub fn infra_tools(args: &[&str], missing: &str) -> String {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testenv/setup.d/infra-tools"
        ))
        .args(args)
        .output()
        .expect("run testenv/setup.d/infra-tools");
    assert!(
        out.status.success(),
        "{missing}: {} (run testenv/setup)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
