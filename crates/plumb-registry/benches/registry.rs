//! Registry benchmark: plumb's registry against CNCF distribution, in the same
//! run on the same machine, plus the machine's raw limits (sha256 of the same
//! bytes, a sequential fsynced disk write). Prints a markdown table.
//!
//! Run through `bench/registry/run`, which builds both servers. Directly:
//! `cargo bench -p plumb-registry --bench registry -- --plumb PATH --distribution PATH [--quick]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use plumb_oci::Digest;

struct Args {
    plumb: PathBuf,
    distribution: PathBuf,
    quick: bool,
}

fn args() -> Args {
    let mut plumb = None;
    let mut distribution = None;
    let mut quick = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--plumb" => plumb = it.next().map(PathBuf::from),
            "--distribution" => distribution = it.next().map(PathBuf::from),
            "--quick" => quick = true,
            _ => {}
        }
    }
    Args {
        plumb: plumb.expect("--plumb PATH (bench/registry/run passes it)"),
        distribution: distribution.expect("--distribution PATH (bench/registry/run passes it)"),
        quick,
    }
}

struct Server {
    name: &'static str,
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(base: &str) {
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("{base}/v2/")).send().await
            && (r.status().is_success() || r.status() == 401)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not come up");
}

async fn start_plumb(bin: &Path, dir: &Path, fsync: bool) -> Server {
    let port = free_port();
    let cfg = dir.join("plumb.yaml");
    std::fs::write(&cfg, format!("storage:\n  fsync: {fsync}\n")).unwrap();
    let child = Command::new(bin)
        .args(["registry", "serve", "--no-auth", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&cfg)
        .arg("--root")
        .arg(dir.join("plumb"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Server {
        name: if fsync { "plumb" } else { "plumb (fsync off)" },
        child,
        base,
    }
}

async fn start_distribution(bin: &Path, dir: &Path) -> Server {
    let port = free_port();
    let cfg = dir.join("distribution.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("distribution").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .env("OTEL_TRACES_EXPORTER", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Server {
        name: "distribution",
        child,
        base,
    }
}

#[derive(Clone, Copy)]
struct Stat {
    mb_s: f64,
    p99_ms: f64,
    ops_s: f64,
}

fn stat(latencies: &mut [Duration], bytes: u64, wall: Duration) -> Stat {
    latencies.sort();
    let idx = ((latencies.len() as f64 * 0.99).ceil() as usize).saturating_sub(1);
    Stat {
        mb_s: bytes as f64 / 1e6 / wall.as_secs_f64(),
        p99_ms: latencies[idx].as_secs_f64() * 1e3,
        ops_s: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

fn payload(base: &Bytes, n: u64) -> Bytes {
    let mut v = base.to_vec();
    v[..8].copy_from_slice(&n.to_le_bytes());
    Bytes::from(v)
}

async fn push_blob(c: &reqwest::Client, base: &str, repo: &str, data: Bytes) -> Digest {
    let d = Digest::sha256_of(&data);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "POST upload: {}",
        r.text().await.unwrap_or_default()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "PUT upload: {}",
        r.text().await.unwrap_or_default()
    );
    d
}

async fn pull_blob(c: &reqwest::Client, base: &str, repo: &str, d: &Digest) -> u64 {
    let r = c
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        n += chunk.unwrap().len() as u64;
    }
    n
}

async fn blob_workload(server: &Server, size: usize, reps: u64, seed: &Bytes) -> (Stat, Stat) {
    let c = reqwest::Client::new();
    let base_bytes = seed.slice(..size);
    let repo = format!("bench/blob{size}");
    let inputs: Vec<Bytes> = (0..reps).map(|i| payload(&base_bytes, i + 1)).collect();
    let mut lat = vec![];
    let mut digests = vec![];
    let start = Instant::now();
    for data in inputs {
        let t = Instant::now();
        digests.push(push_blob(&c, &server.base, &repo, data).await);
        lat.push(t.elapsed());
    }
    let push = stat(&mut lat, size as u64 * reps, start.elapsed());
    let mut lat = vec![];
    let start = Instant::now();
    for d in &digests {
        let t = Instant::now();
        assert_eq!(pull_blob(&c, &server.base, &repo, d).await, size as u64);
        lat.push(t.elapsed());
    }
    let pull = stat(&mut lat, size as u64 * reps, start.elapsed());
    (push, pull)
}

async fn manifest_workload(server: &Server, count: usize, concurrency: usize) -> (Stat, Stat) {
    let c = reqwest::Client::new();
    let repo = "bench/manifests";
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layer = Bytes::from(vec![7u8; 1024]);
    let cd = push_blob(&c, &server.base, repo, config.clone()).await;
    let ld = push_blob(&c, &server.base, repo, layer.clone()).await;
    let manifests: Vec<(String, Bytes)> = (0..count)
        .map(|i| {
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":1024}}],"annotations":{{"n":"{i}"}}}}"#,
                config.len()
            );
            (format!("t-{i}"), Bytes::from(m))
        })
        .collect();
    let total: u64 = manifests.iter().map(|(_, m)| m.len() as u64).sum();
    let chunks: Vec<Vec<(String, Bytes)>> = manifests
        .chunks(count.div_ceil(concurrency))
        .map(|c| c.to_vec())
        .collect();

    let start = Instant::now();
    let mut tasks = vec![];
    for chunk in chunks.clone() {
        let (c, base) = (c.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            for (tag, m) in chunk {
                let t = Instant::now();
                let r = c
                    .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(m)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let push = stat(&mut lat, total, start.elapsed());

    let start = Instant::now();
    let mut tasks = vec![];
    for chunk in chunks {
        let (c, base) = (c.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            for (tag, m) in chunk {
                let t = Instant::now();
                let r = c
                    .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.bytes().await.unwrap(), m);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let pull = stat(&mut lat, total, start.elapsed());
    (push, pull)
}

fn raw_sha256(data: &[u8]) -> f64 {
    let t = Instant::now();
    let d = Digest::sha256_of(data);
    std::hint::black_box(d);
    data.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
}

fn raw_disk_write(dir: &Path, data: &[u8]) -> f64 {
    let p = dir.join("raw-write");
    let t = Instant::now();
    let mut f = std::fs::File::create(&p).unwrap();
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    let mb_s = data.len() as f64 / 1e6 / t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&p).unwrap();
    mb_s
}

fn main() {
    plumb_oci::client::install_crypto_provider();
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("plumb-registry-bench")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let mb = 1_000_000usize;
    let sizes: Vec<(usize, u64, &str)> = if args.quick {
        vec![
            (mb, 20, "1 MB blob"),
            (100 * mb, 2, "100 MB blob"),
            (1000 * mb, 1, "1 GB blob"),
        ]
    } else {
        vec![
            (mb, 100, "1 MB blob"),
            (100 * mb, 5, "100 MB blob"),
            (1000 * mb, 2, "1 GB blob"),
        ]
    };
    eprintln!("bench: generating 1 GB of input");
    let mut seed = vec![0u8; 1000 * mb];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in seed.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let seed = Bytes::from(seed);
    let sha = raw_sha256(&seed);
    let disk = raw_disk_write(dir.path(), &seed);
    let raw = sha.min(disk);

    let mut rows: Vec<(String, Stat, Option<Stat>, Stat)> = vec![];
    rt.block_on(async {
        for (size, reps, label) in &sizes {
            let mut results = vec![];
            for which in ["plumb", "plumb-nofsync", "distribution"] {
                let sdir = dir.path().join(format!("{which}-{size}"));
                std::fs::create_dir_all(&sdir).unwrap();
                let server = match which {
                    "plumb" => start_plumb(&args.plumb, &sdir, true).await,
                    "plumb-nofsync" => start_plumb(&args.plumb, &sdir, false).await,
                    _ => start_distribution(&args.distribution, &sdir).await,
                };
                eprintln!("bench: {label} x{reps} against {}", server.name);
                results.push(blob_workload(&server, *size, *reps, &seed).await);
                drop(server);
                let _ = std::fs::remove_dir_all(&sdir);
            }
            rows.push((
                format!("push {label}"),
                results[0].0,
                Some(results[1].0),
                results[2].0,
            ));
            rows.push((
                format!("pull {label}"),
                results[0].1,
                Some(results[1].1),
                results[2].1,
            ));
        }
        let mut results = vec![];
        for which in ["plumb", "distribution"] {
            let sdir = dir.path().join(format!("{which}-manifests"));
            std::fs::create_dir_all(&sdir).unwrap();
            let server = if which == "plumb" {
                start_plumb(&args.plumb, &sdir, true).await
            } else {
                start_distribution(&args.distribution, &sdir).await
            };
            eprintln!("bench: 1000 manifests against {}", server.name);
            results.push(manifest_workload(&server, 1000, 8).await);
        }
        rows.push((
            "push 1000 manifests (8 clients)".into(),
            results[0].0,
            None,
            results[1].0,
        ));
        rows.push((
            "pull 1000 manifests (8 clients)".into(),
            results[0].1,
            None,
            results[1].1,
        ));
    });

    println!(
        "raw limit on this machine: sha256 {sha:.0} MB/s, sequential fsynced disk write {disk:.0} MB/s (min {raw:.0} MB/s)"
    );
    println!();
    println!(
        "| workload | plumb MB/s | plumb p99 ms | distribution MB/s | distribution p99 ms | plumb / distribution | plumb / raw limit | plumb, fsync off, MB/s | fsync off / distribution |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, p, nofsync, d) in &rows {
        let manifests = name.contains("manifests");
        let (pv, dv) = if manifests {
            (p.ops_s, d.ops_s)
        } else {
            (p.mb_s, d.mb_s)
        };
        let unit = if manifests { " (ops/s)" } else { "" };
        let vs_raw = if manifests {
            "-".to_string()
        } else {
            format!("{:.2}", p.mb_s / raw)
        };
        let (nf, nf_ratio) = match nofsync {
            Some(n) => (format!("{:.1}", n.mb_s), format!("{:.2}x", n.mb_s / d.mb_s)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {name}{unit} | {pv:.1} | {:.1} | {dv:.1} | {:.1} | {:.2}x | {vs_raw} | {nf} | {nf_ratio} |",
            p.p99_ms,
            d.p99_ms,
            pv / dv
        );
    }
}
