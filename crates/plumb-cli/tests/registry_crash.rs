//! `plumb registry serve` killed with SIGKILL while blobs are pushed: after a
//! restart on the same root, every blob it acknowledged is served byte for
//! byte, every other blob is either absent or whole, and no upload is left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plumb_oci::Digest;

/// Start a registry on `root` (fsync on, the default) and wait until it answers.
fn serve(root: &Path) -> (Child, u16) {
    let port = plumb_testenv::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["registry", "serve", "--no-auth", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(port, "GET", "/v2/", &[]).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the registry did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// One HTTP/1.1 request on a connection of its own: status, head and body;
/// `None` when the connection fails (the server was killed).
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut raw = vec![];
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, raw[split + 4..].to_vec()))
}

/// POST, then PUT with the digest; true when the registry answered 201.
fn push(port: u16, data: &[u8]) -> bool {
    let d = Digest::sha256_of(data);
    let Some((202, head, _)) = request(port, "POST", "/v2/crash/blobs/uploads/", &[]) else {
        return false;
    };
    let location = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .expect("202 names the upload");
    let sep = if location.contains('?') { '&' } else { '?' };
    matches!(
        request(port, "PUT", &format!("{location}{sep}digest={d}"), data),
        Some((201, _, _))
    )
}

/// A blob pushed, and whether the registry acknowledged it.
type Attempt = (Vec<u8>, bool);

/// A 300 kB blob of its own for each `i`.
fn blob(i: u32) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ i.wrapping_mul(0x85eb_ca6b);
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn sigkill_while_pushing_loses_no_acknowledged_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut acknowledged = vec![];

    // Killed right after acknowledging its last push, with nothing after it.
    let (mut child, port) = serve(&root);
    for i in 0..20 {
        let data = blob(i);
        assert!(push(port, &data), "push {i}");
        acknowledged.push(data);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Killed in the middle of a stream of pushes.
    let (mut child, port) = serve(&root);
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (attempts, stop) = (attempts.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 100.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let data = blob(i);
                let ok = push(port, &data);
                attempts.lock().unwrap().push((data, ok));
                if !ok {
                    break;
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while attempts.lock().unwrap().iter().filter(|a| a.1).count() < 30 {
        assert!(Instant::now() < deadline, "pushes did not go through");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL, mid-push
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();

    let (mut child, port) = serve(&root);
    let attempts = attempts.lock().unwrap();
    let mut others = 0;
    for (data, ok) in attempts
        .iter()
        .map(|(d, ok)| (d, *ok))
        .chain(acknowledged.iter().map(|d| (d, true)))
    {
        let d = Digest::sha256_of(data);
        let (status, _, body) = request(port, "GET", &format!("/v2/crash/blobs/{d}"), &[]).unwrap();
        if ok {
            assert_eq!(status, 200, "acknowledged blob {d} is served");
            assert!(body == *data, "acknowledged blob {d} is served whole");
        } else {
            others += 1;
            assert!(
                status == 404 || (status == 200 && body == *data),
                "an unacknowledged blob is absent or whole (got {status}, {} bytes)",
                body.len()
            );
        }
    }
    assert!(others <= 1, "the pusher stops at its first failure");
    assert_eq!(
        std::fs::read_dir(root.join("uploads")).unwrap().count(),
        0,
        "no upload survives a restart"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
