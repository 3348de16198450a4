"""Drives `plumb agent` for bench/agent. See that script."""
import json, os, random, ssl, statistics, subprocess, sys, time, urllib.request

plumb, work, APPS, OBJECTS, EDITS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
state = os.environ["PLUMB_TESTENV"]
kubeconfig = os.environ["KUBECONFIG"]
server = next(l.split("server:")[1].strip() for l in open(kubeconfig) if "server:" in l)
ctx = ssl.create_default_context(cafile=f"{state}/pki/ca.crt")
ctx.load_cert_chain(f"{state}/pki/admin.crt", f"{state}/pki/admin.key")

def kube(method, path, body=None, ctype="application/merge-patch+json"):
    req = urllib.request.Request(server + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, context=ctx) as r:
        return json.load(r)

def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout

# A repository with APPS applications of OBJECTS objects (90% ConfigMaps, 10% Deployments).
repo, checkout = f"{work}/repo.git", f"{work}/checkout"
sh("git", "init", "-q", "--bare", "-b", "main", repo)
sh("git", "clone", "-q", repo, checkout)
def write_app(i, gen):
    d = f"{checkout}/apps/app-{i:03d}"
    os.makedirs(d, exist_ok=True)
    docs = []
    for j in range(OBJECTS):
        if j % 10 == 9:
            docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: d-{j:02d}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: d-{j:02d}}}}}
  template:
    metadata: {{labels: {{app: d-{j:02d}}}}}
    spec: {{containers: [{{name: c, image: "registry.example.com/app:{gen}"}}]}}
""")
        else:
            docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c-{j:02d}}}\ndata: {{gen: \"{gen}\", v: \"{j}\"}}\n")
    open(f"{d}/all.yaml", "w").write("---\n".join(docs))
for i in range(APPS):
    write_app(i, 1)
sh("git", "-C", checkout, "add", "-A")
sh("git", "-C", checkout, "-c", "user.name=bench", "-c", "user.email=b@x", "commit", "-q", "-m", "gen 1")
sh("git", "-C", checkout, "push", "-q", "origin", "main")
os.makedirs(f"{work}/apps")
for i in range(APPS):
    open(f"{work}/apps/app-{i:03d}.yaml", "w").write(f"""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: app-{i:03d}, namespace: argocd}}
spec:
  source: {{repoURL: "file://{repo}", targetRevision: main, path: apps/app-{i:03d}}}
  destination: {{server: "https://kubernetes.default.svc", namespace: bench-{i:03d}}}
  syncPolicy:
    automated: {{prune: true, selfHeal: true}}
    syncOptions: [CreateNamespace=true]
""")

port = 18000 + random.randint(0, 2000)
log = open(f"{work}/agent.log", "w")
agent = subprocess.Popen([plumb, "--data-dir", f"{work}/data", "agent", f"{work}/apps", "--listen", f"127.0.0.1:{port}",
                          "--poll-interval", "1h", "--resync-interval", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
open(f"{work}/agent.pid", "w").write(str(agent.pid))
token = agent.stdout.readline().strip()
api = f"http://127.0.0.1:{port}"

def get(path):
    req = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r) if "json" in r.headers.get("Content-Type", "") else r.read().decode()

def wait_listening():
    for _ in range(400):
        try:
            urllib.request.urlopen(api + "/healthz").read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit("agent did not start")

def all_synced(rev=None):
    items = get("/api/v1/applications?limit=500")["items"]
    return len(items) == APPS and all(a["sync"] == "Synced" and a.get("phase") == "Idle" and (rev is None or a.get("revision") == rev) for a in items)

def wait(pred, timeout=900):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timed out")
        time.sleep(0.05)
    return time.monotonic() - t0

wait_listening()
t_initial = wait(all_synced)

# Webhook: one commit changes every Application; the push is announced.
for i in range(APPS):
    write_app(i, 2)
sh("git", "-C", checkout, "commit", "-q", "-am", "gen 2")
sh("git", "-C", checkout, "push", "-q", "origin", "main")
rev = sh("git", "-C", checkout, "rev-parse", "HEAD").strip()
payload = json.dumps({"ref": "refs/heads/main", "after": rev, "repository": {"clone_url": f"file://{repo}"}}).encode()
t0 = time.monotonic()
urllib.request.urlopen(urllib.request.Request(api + "/api/webhook", data=payload, method="POST",
    headers={"Content-Type": "application/json", "X-GitHub-Event": "push"})).read()
done_at = {}
def track():
    for a in get("/api/v1/applications?limit=500")["items"]:
        if a["name"] not in done_at and a["sync"] == "Synced" and a.get("revision") == rev:
            done_at[a["name"]] = time.monotonic() - t0
    return len(done_at) == APPS
wait(track)
t_webhook = time.monotonic() - t0
per_app = sorted(done_at.values())

# Drift: random edits, each timed until reverted.
random.seed(7)
lat = []
for _ in range(EDITS):
    i, j = random.randrange(APPS), random.randrange(OBJECTS)
    if j % 10 == 9:
        j -= 1
    path = f"/api/v1/namespaces/bench-{i:03d}/configmaps/c-{j:02d}"
    kube("PATCH", path, {"data": {"v": "tampered"}})
    t0 = time.monotonic()
    while kube("GET", path)["data"]["v"] == "tampered":
        if time.monotonic() - t0 > 30:
            raise SystemExit(f"edit of {path} not reverted in 30 s")
        time.sleep(0.005)
    lat.append(time.monotonic() - t0)
lat.sort()
p50 = statistics.median(lat)
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

# Steady state: RSS, and API requests while idle.
time.sleep(10)
rss = int(next(l.split()[1] for l in open(f"/proc/{agent.pid}/status") if l.startswith("VmRSS"))) / 1024
def requests():
    total = 0.0
    for line in get("/metrics").splitlines():
        if line.startswith("plumb_kube_api_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
r0 = requests(); time.sleep(60); r1 = requests()
agent.terminate(); agent.wait(30)

version = sh(plumb, "--version").strip()
print()
print(f"{version}, {APPS} Applications x {OBJECTS} objects ({APPS * OBJECTS} total), Kubernetes testenv, {os.cpu_count()} cores")
print()
print("| measure | result |")
print("|---|---|")
print(f"| initial sync, all Applications | {t_initial:.1f} s |")
print(f"| webhook → first Application live at the new commit | {per_app[0]:.2f} s |")
print(f"| webhook → median Application live | {statistics.median(per_app):.2f} s |")
print(f"| webhook → all {APPS} Applications synced at the new commit | {t_webhook:.2f} s |")
print(f"| drift → reverted, p50 over {EDITS} edits | {p50 * 1000:.0f} ms |")
print(f"| drift → reverted, p99 | {p99 * 1000:.0f} ms |")
print(f"| agent RSS at steady state | {rss:.0f} MiB |")
print(f"| Kubernetes API requests per minute while idle | {r1 - r0:.0f} |")
