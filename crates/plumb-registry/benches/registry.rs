//! Registry benchmark: plumb's registry against CNCF distribution, in the same
//! run on the same machine, plus the machine's raw limits for the same blobs
//! (sha256 of each, and each written to a new file ended by fsync). Blob rows
//! are the median of three rounds (`--rounds N`) that alternate the servers. Prints a
//! markdown table.
//!
//! Run through `bench/registry/run`, which builds both servers. Directly:
//! `cargo bench -p plumb-registry --bench registry -- --plumb PATH --distribution PATH [--quick] [--rounds N] [--only TEXT]`
//! (`--only` keeps the workloads whose label contains TEXT, e.g. `GB` or `manifests`)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use plumb_oci::Digest;

struct Args {
    plumb: PathBuf,
    distribution: PathBuf,
    quick: bool,
    rounds: Option<usize>,
    only: Option<String>,
}

fn args() -> Args {
    let mut plumb = None;
    let mut distribution = None;
    let mut quick = false;
    let mut rounds = None;
    let mut only = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--plumb" => plumb = it.next().map(PathBuf::from),
            "--distribution" => distribution = it.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--rounds" => rounds = it.next().and_then(|n| n.parse().ok()),
            "--only" => only = it.next(),
            _ => {}
        }
    }
    Args {
        plumb: plumb.expect("--plumb PATH (bench/registry/run passes it)"),
        distribution: distribution.expect("--distribution PATH (bench/registry/run passes it)"),
        quick,
        rounds,
        only,
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

/// The server `child`, listening on `port`, once it answers.
async fn running(name: &'static str, child: Child, port: u16) -> Server {
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Server { name, child, base }
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
    let name = if fsync { "plumb" } else { "plumb (fsync off)" };
    running(name, child, port).await
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
    running("distribution", child, port).await
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
    let sep = if loc.contains('?') { '&' } else { '?' };
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
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

/// One keep-alive HTTP/1.1 connection driven by hyper: the load generator for
/// blob pushes. It does no work a registry does not make it do (digests are
/// computed before the clock starts), so the server, not the client, sets
/// the pace.
struct BlobClient {
    addr: String,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl BlobClient {
    async fn connect(base: &str) -> Self {
        let addr = base.trim_start_matches("http://").to_owned();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        BlobClient { addr, send }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> hyper::Response<hyper::body::Incoming> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("content-type", "application/octet-stream")
            .header("content-length", body.len())
            .body(Full::new(body))
            .unwrap();
        self.send.ready().await.unwrap();
        self.send.send_request(req).await.unwrap()
    }

    /// POST + monolithic PUT of `data`, whose digest the caller knows.
    async fn push(&mut self, repo: &str, data: Bytes, d: &Digest) {
        let r = self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"), Bytes::new())
            .await;
        assert_eq!(r.status(), 202, "POST upload");
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        r.into_body().collect().await.unwrap();
        let path = match loc.find("/v2/") {
            Some(i) => loc[i..].to_owned(),
            None => loc,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self
            .request("PUT", &format!("{path}{sep}digest={d}"), data)
            .await;
        assert_eq!(r.status(), 201, "PUT upload");
        r.into_body().collect().await.unwrap();
    }
}

/// The load generator for pulls: one keep-alive connection that sends a GET,
/// parses the response head with httparse and then discards the body in the
/// kernel (`recv` with `MSG_TRUNC`), counting its bytes. Client and servers
/// share this machine's two cores, so a client that copied every byte would
/// spend the core the server needs and pull every server towards its own
/// speed; this one leaves the CPU to the server.
struct SinkClient {
    tcp: tokio::net::TcpStream,
    host: String,
    sink: Vec<u8>,
}

impl SinkClient {
    async fn connect(base: &str) -> Self {
        let host = base.trim_start_matches("http://").to_owned();
        let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        SinkClient {
            tcp,
            host,
            sink: vec![0; 1 << 20],
        }
    }

    /// GET a blob; returns how many body bytes came.
    async fn pull(&mut self, repo: &str, d: &Digest) -> u64 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let req = format!(
            "GET /v2/{repo}/blobs/{d} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        );
        self.tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::with_capacity(4096);
        let (head_len, len) = loop {
            let mut buf = [0u8; 4096];
            let n = self.tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed in the response head");
            head.extend_from_slice(&buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = resp.parse(&head).unwrap() {
                assert_eq!(resp.code, Some(200));
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    })
                    .expect("content-length");
                break (head_len, len);
            }
        };
        let mut got = (head.len() - head_len) as u64;
        while got < len {
            let want = ((len - got) as usize).min(self.sink.len());
            self.tcp.readable().await.unwrap();
            let sink = &mut self.sink[..want];
            let tcp = &self.tcp;
            match tcp.try_io(tokio::io::Interest::READABLE, || {
                rustix::net::recv(tcp, &mut *sink, rustix::net::RecvFlags::TRUNC)
                    .map(|(_, n)| n)
                    .map_err(std::io::Error::from)
            }) {
                Ok(0) => panic!("connection closed in the body"),
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        got
    }
}

async fn blob_workload(server: &Server, size: usize, reps: u64, seed: &Bytes) -> (Stat, Stat) {
    let mut c = BlobClient::connect(&server.base).await;
    let base_bytes = seed.slice(..size);
    let repo = format!("bench/blob{size}");
    let inputs: Vec<(Bytes, Digest)> = (0..reps)
        .map(|i| {
            let data = payload(&base_bytes, i + 1);
            let d = Digest::sha256_of(&data);
            (data, d)
        })
        .collect();
    let digests: Vec<Digest> = inputs.iter().map(|(_, d)| d.clone()).collect();
    let mut lat = vec![];
    let start = Instant::now();
    for (data, d) in inputs {
        let t = Instant::now();
        c.push(&repo, data, &d).await;
        lat.push(t.elapsed());
    }
    let push = stat(&mut lat, size as u64 * reps, start.elapsed());
    settle();
    let mut sink = SinkClient::connect(&server.base).await;
    let mut lat = vec![];
    let start = Instant::now();
    for _ in 0..PULL_PASSES {
        for d in &digests {
            let t = Instant::now();
            assert_eq!(sink.pull(&repo, d).await, size as u64);
            lat.push(t.elapsed());
        }
    }
    let pull = stat(&mut lat, size as u64 * reps * PULL_PASSES, start.elapsed());
    (push, pull)
}

/// The round with the median throughput.
fn median(stats: impl Iterator<Item = Stat>) -> Stat {
    let mut v: Vec<Stat> = stats.collect();
    v.sort_by(|a, b| a.mb_s.total_cmp(&b.mb_s));
    v[v.len() / 2]
}

/// Every pushed blob is pulled this many times (large pulls take tens of
/// milliseconds each, too short to time once).
const PULL_PASSES: u64 = 5;

/// Let the disk go quiet between phases: earlier phases' dirty pages and
/// deletions are flushed before the next server is timed, so no server pays
/// for another's writeback.
fn settle() {
    let _ = Command::new("sync").status();
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

    let (client, base) = (c.clone(), server.base.clone());
    let push = concurrently(chunks.clone(), total, move |tag, m| {
        let put = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m);
        async move {
            let r = put.send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
    })
    .await;

    let (client, base) = (c.clone(), server.base.clone());
    let pull = concurrently(chunks, total, move |tag, m| {
        let get = client
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        async move {
            let r = get.send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap(), m);
        }
    })
    .await;
    (push, pull)
}

/// Run `op` on every (tag, manifest) of every chunk, one task a chunk, all
/// chunks at once; times each call (from building its request to the last
/// check) and the whole, over `bytes` moved.
async fn concurrently<F, Fut>(chunks: Vec<Vec<(String, Bytes)>>, bytes: u64, op: F) -> Stat
where
    F: Fn(String, Bytes) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = vec![];
    for chunk in chunks {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            for (tag, m) in chunk {
                let t = Instant::now();
                op(tag, m).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    stat(&mut lat, bytes, start.elapsed())
}

/// The machine's limits for the same bytes, blob by blob: sha256 of each
/// in memory, and each written to a new file ended by fsync (what a durable
/// store must at least do per blob). MB/s for each, the best of three tries
/// (this machine's disk is uneven from one write to the next).
fn raw_limits(dir: &Path, size: usize, reps: u64, seed: &Bytes) -> (f64, f64) {
    let inputs: Vec<Bytes> = (0..reps)
        .map(|i| payload(&seed.slice(..size), i + 1))
        .collect();
    let total = (size as u64 * reps) as f64 / 1e6;
    let (mut sha, mut disk) = (0f64, 0f64);
    for _ in 0..3 {
        let t = Instant::now();
        for data in &inputs {
            std::hint::black_box(Digest::sha256_of(data));
        }
        sha = sha.max(total / t.elapsed().as_secs_f64());
        settle();
        let t = Instant::now();
        for (i, data) in inputs.iter().enumerate() {
            let mut f = std::fs::File::create(dir.join(format!("raw-{i}"))).unwrap();
            for chunk in data.chunks(1 << 20) {
                f.write_all(chunk).unwrap();
            }
            f.sync_all().unwrap();
        }
        disk = disk.max(total / t.elapsed().as_secs_f64());
        for i in 0..inputs.len() {
            std::fs::remove_file(dir.join(format!("raw-{i}"))).unwrap();
        }
        settle();
    }
    (sha, disk)
}

struct Row {
    name: String,
    plumb: Stat,
    nofsync: Option<Stat>,
    distribution: Stat,
    /// (sha256 MB/s, fsynced write MB/s) of the same blobs.
    raw: Option<(f64, f64)>,
}

fn main() {
    plumb_oci::client::install_crypto_provider();
    let args = args();
    // Blob transfers run one connection at a time on a single-threaded
    // runtime: hyper's connection task and the reader then share a thread
    // instead of waking each other across cores. The manifest workload's
    // concurrent clients get a multi-threaded one.
    let blob_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("plumb-registry-bench")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let mb = 1_000_000usize;
    let rounds_per_size = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let wanted = |label: &str| args.only.as_deref().is_none_or(|o| label.contains(o));
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

    let mut rows: Vec<Row> = vec![];
    blob_rt.block_on(async {
        for (size, reps, label) in sizes.iter().filter(|(_, _, l)| wanted(l)) {
            // Rounds alternate the servers; each server's row is its median
            // round, so one slow moment of this machine's disk or scheduler
            // does not decide a ratio.
            let mut rounds: [Vec<(Stat, Stat)>; 3] = [vec![], vec![], vec![]];
            for round in 0..rounds_per_size {
                for (k, which) in ["plumb", "plumb-nofsync", "distribution"]
                    .into_iter()
                    .enumerate()
                {
                    let sdir = dir.path().join(format!("{which}-{size}"));
                    std::fs::create_dir_all(&sdir).unwrap();
                    let server = match which {
                        "plumb" => start_plumb(&args.plumb, &sdir, true).await,
                        "plumb-nofsync" => start_plumb(&args.plumb, &sdir, false).await,
                        _ => start_distribution(&args.distribution, &sdir).await,
                    };
                    eprintln!(
                        "bench: {label} x{reps} against {} (round {})",
                        server.name,
                        round + 1
                    );
                    settle();
                    rounds[k].push(blob_workload(&server, *size, *reps, &seed).await);
                    drop(server);
                    let _ = std::fs::remove_dir_all(&sdir);
                }
            }
            let results: Vec<(Stat, Stat)> = rounds
                .iter()
                .map(|r| (median(r.iter().map(|x| x.0)), median(r.iter().map(|x| x.1))))
                .collect();
            eprintln!("bench: {label} x{reps}: raw limits");
            let raw = raw_limits(dir.path(), *size, *reps, &seed);
            for (i, verb) in ["push", "pull"].into_iter().enumerate() {
                let pick = |r: &(Stat, Stat)| if i == 0 { r.0 } else { r.1 };
                rows.push(Row {
                    name: format!("{verb} {label}"),
                    plumb: pick(&results[0]),
                    nofsync: Some(pick(&results[1])),
                    distribution: pick(&results[2]),
                    raw: Some(raw),
                });
            }
        }
    });
    rt.block_on(async {
        if !wanted("manifests") {
            return;
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
            settle();
            results.push(manifest_workload(&server, 1000, 8).await);
        }
        for (i, verb) in ["push", "pull"].into_iter().enumerate() {
            let pick = |r: &(Stat, Stat)| if i == 0 { r.0 } else { r.1 };
            rows.push(Row {
                name: format!("{verb} 1000 manifests (8 clients)"),
                plumb: pick(&results[0]),
                nofsync: None,
                distribution: pick(&results[1]),
                raw: None,
            });
        }
    });

    println!(
        "| workload | plumb MB/s | plumb p99 ms | distribution MB/s | distribution p99 ms | plumb / distribution | raw limit MB/s (sha256, fsynced write) | plumb / raw limit | plumb, fsync off, MB/s | fsync off / distribution |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let (p, d) = (&row.plumb, &row.distribution);
        let (pv, dv, unit) = match row.raw {
            None => (p.ops_s, d.ops_s, " (ops/s)"),
            Some(_) => (p.mb_s, d.mb_s, ""),
        };
        let (raw, vs_raw) = match row.raw {
            Some((sha, disk)) => {
                let limit = sha.min(disk);
                (
                    format!("{limit:.0} ({sha:.0}, {disk:.0})"),
                    format!("{:.2}", p.mb_s / limit),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let (nf, nf_ratio) = match row.nofsync {
            Some(n) => (format!("{:.1}", n.mb_s), format!("{:.2}x", n.mb_s / d.mb_s)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {}{unit} | {pv:.1} | {:.1} | {dv:.1} | {:.1} | {:.2}x | {raw} | {vs_raw} | {nf} | {nf_ratio} |",
            row.name,
            p.p99_ms,
            d.p99_ms,
            pv / dv
        );
    }
}
