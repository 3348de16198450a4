//! A throwaway PostgreSQL server for tests: initdb into a temporary directory,
//! a free loopback port, the unix socket inside that directory. Stopped (and
//! its files removed) on drop. Runs as the `postgres` user when the tests run
//! as root, because initdb refuses root.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::infra_tools::infra_tools;

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn postgres_bin() -> PathBuf {
    PathBuf::from(infra_tools(
        &["postgres-bin"],
        "PostgreSQL is not installed",
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn as_owner(cmd: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", cmd]);
        c
    } else {
        Command::new(cmd)
    }
}

/// Runs `cmd` to success; a failure shows its stderr and the server's log in
/// `dir`, if there is one yet.
fn succeed(cmd: &mut Command, what: &str, dir: &Path) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
}

impl TestPostgres {
    pub fn start() -> TestPostgres {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("plumb-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                ok.success(),
                "chown the temporary data directory to postgres"
            );
        }
        let data = dir.path().join("data");
        succeed(
            as_owner(bin.join("initdb").to_str().unwrap())
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(&data),
            "initdb",
            dir.path(),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        succeed(
            as_owner(bin.join("pg_ctl").to_str().unwrap())
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.path().join("log"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "start"]),
            "pg_ctl start",
            dir.path(),
        );
        TestPostgres { dir, bin, port }
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = as_owner(self.bin.join("pg_ctl").to_str().unwrap_or("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}
