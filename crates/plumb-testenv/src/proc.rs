//! Running the programs tests drive: their output as text, a command that
//! must succeed, a server killed when the test lets go of it, waiting for a
//! port, and the Go fixture binary the scan tests put into images.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A command's stdout and stderr, together, as text.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run `cmd`, fail the test unless it succeeds, and return its trimmed stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait up to 30 s until something accepts connections on `host` (`ip:port`).
#[track_caller]
pub fn wait_for_port(host: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(host).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {host}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Build, in `dir`, a Go program named `name` that uses
/// `golang.org/x/text` v0.21.0 (which the Go vulnerability database lists as
/// affected), offline from the module cache `testenv/setup.d/50-scan` fills.
pub fn go_text_binary(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the Go module directory");
    std::fs::write(
        dir.join("go.mod"),
        format!("module example.com/{name}\n\ngo 1.22\n\nrequire golang.org/x/text v0.21.0\n"),
    )
    .expect("write go.mod");
    std::fs::write(
        dir.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"golang.org/x/text/language\"\n)\n\nfunc main() { fmt.Println(language.English) }\n",
    )
    .expect("write main.go");
    run_ok(
        Command::new("go")
            .args(["build", "-buildvcs=false", "-o", name, "."])
            .current_dir(dir)
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local"),
    );
    dir.join(name)
}

/// A webhook receiver on 127.0.0.1 (for notification tests): its URL, and
/// the bodies of the requests it was sent, in arrival order.
pub fn webhook_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("webhook sink");
    let url = format!(
        "http://{}/hook",
        listener.local_addr().expect("webhook sink")
    );
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0usize);
                    if body.len() >= len {
                        sink.lock().expect("webhook sink").push(body.to_string());
                        break;
                    }
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}
