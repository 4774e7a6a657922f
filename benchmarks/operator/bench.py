"""Operator benchmark: N TrainingJobs applied at once, against the floor of no operator at all.

For each N, in one run on the local rig (`make dev-cluster`):
  operator  N TrainingJobs of 4 workers are created at once while `python -m kubeforge_operator`
            runs in its own process; we time until every child exists (the worker Jobs are
            applied last) and until every TrainingJob's status says Running, and read the
            operator's peak RSS, CPU seconds and API requests (its Prometheus counter).
  floor     the very same child objects (the operator's own builders, without owner references)
            are server-side applied directly with the same client and concurrency; we time until
            they all exist and until all their pods are Running.
The ratios operator/floor are the figures to watch; both sides share the apiserver, the Job
controller, the scheduler and kwok, so what the ratio adds is the operator's own cost. The CPU
seconds the control plane (apiserver, etcd, controller-manager, scheduler, kwok) spent on each side
show where that cost lands.

Usage: .venv/bin/python benchmarks/operator/bench.py [N ...]   (default: 100 500 1000)
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod

from kubeforge.api.trainingjob import TrainingJob
from kubeforge_operator.k8s import Kube, TrainingJobResource
from kubeforge_operator.trainingjob.builders import build_children

REPO = Path(__file__).resolve().parents[2]
WORKERS = 4
CONCURRENCY = 8
SPEC = {
    "image": "registry.invalid/kubeforge/trainer:1",
    "trainer": {"model": {"architecture": "mlp"}, "steps": 1000},
    "replicas": WORKERS,
}


RIG_PROCESSES = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass
class Result:
    children_s: float
    running_s: float
    requests: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    rig_cpu_s: float = 0.0


def load_rig_env() -> None:
    env = REPO / ".dev-cluster" / "env"
    if not env.exists():
        raise SystemExit("start the rig first: make dev-cluster")
    for line in env.read_text().splitlines():
        if line.startswith("export ") and not line.startswith("export PATH="):
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = value


async def gather_limited(calls: list[Callable[[], Awaitable[Any]]]) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def run(call: Callable[[], Awaitable[Any]]) -> None:
        async with semaphore:
            await call()

    await asyncio.gather(*(run(call) for call in calls))


async def wait_until(check: Callable[[], Awaitable[bool]], start: float, limit: float) -> float:
    while not await check():
        if time.perf_counter() - start > limit:
            raise TimeoutError("the benchmark did not converge")
        await asyncio.sleep(0.5)
    return time.perf_counter() - start


async def count(client: AsyncClient, resource: Any, namespace: str, **filters: Any) -> int:
    return sum([1 async for _ in client.list(resource, namespace=namespace, **filters)])


async def fresh_namespace(client: AsyncClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await client.create(Namespace.from_dict({"metadata": {"name": name}}))
    return name


async def drop_namespace(client: AsyncClient, name: str) -> None:
    """Deletes the namespace and waits until it is gone, so the next run starts on a quiet rig."""
    await client.delete(Namespace, name)
    while True:
        try:
            await client.get(Namespace, name)
        except ApiError:
            return
        await asyncio.sleep(1)


def training_job(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": f"tj-{index}", "namespace": namespace},
        "spec": copy.deepcopy(SPEC),
    }


def proc_stats(pid: int) -> tuple[float, float]:
    """Peak RSS in MB and CPU seconds of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return peak_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def rig_cpu_seconds() -> float:
    """CPU seconds used so far by the rig's control plane (the S3 server is not involved)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "exe").readlink().name not in RIG_PROCESSES:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone, or not ours to read
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def scrape_requests(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kubeforge_api_requests_total{")
    )


async def run_operator_side(client: AsyncClient, n: int, limit: float) -> Result:
    namespace = await fresh_namespace(client, "bench-operator")
    port = 18000 + n % 1000
    operator = subprocess.Popen(
        [sys.executable, "-m", "kubeforge_operator", "--namespace", namespace,
         "--metrics-port", str(port), "--health-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)  # the operator lists and starts watching
        start = time.perf_counter()
        rig_cpu = rig_cpu_seconds()
        await gather_limited(
            [
                lambda i=i: client.create(TrainingJobResource.from_dict(training_job(namespace, i)))
                for i in range(n)
            ]
        )

        async def children() -> bool:
            return await count(client, Job, namespace) == n

        async def running() -> bool:
            phases = [
                (tj.status or {}).get("phase")
                async for tj in client.list(TrainingJobResource, namespace=namespace)
            ]
            return phases.count("Running") == n

        children_s = await wait_until(children, start, limit)
        running_s = await wait_until(running, start, limit)
        rig_cpu = rig_cpu_seconds() - rig_cpu
        peak_rss, cpu = proc_stats(operator.pid)
        return Result(children_s, running_s, scrape_requests(port) / n, peak_rss, cpu, rig_cpu)
    finally:
        operator.terminate()
        operator.wait(30)
        await drop_namespace(client, namespace)


async def run_floor_side(client: AsyncClient, n: int, limit: float) -> Result:
    namespace = await fresh_namespace(client, "bench-floor")
    kube = Kube(client)
    objects = []
    for i in range(n):
        body = training_job(namespace, i)
        body["metadata"]["uid"] = str(uuid.uuid4())
        for child in build_children(TrainingJob.model_validate(body), dataset_uri=None):
            del child["metadata"]["ownerReferences"]  # no owner exists to point at
            objects.append(child)
    try:
        start = time.perf_counter()
        rig_cpu = rig_cpu_seconds()
        await gather_limited([lambda obj=obj: kube.apply(obj) for obj in objects])

        async def children() -> bool:
            return await count(client, Job, namespace) == n

        async def running() -> bool:
            return await count(client, Pod, namespace, fields={"status.phase": "Running"}) == (
                n * WORKERS
            )

        children_s = await wait_until(children, start, limit)
        running_s = await wait_until(running, start, limit)
        rig_cpu = rig_cpu_seconds() - rig_cpu
        return Result(children_s, running_s, requests=len(objects) / n, rig_cpu_s=rig_cpu)
    finally:
        await drop_namespace(client, namespace)


async def main(sizes: list[int]) -> None:
    load_rig_env()
    client = AsyncClient(field_manager="kubeforge-benchmark")
    print(
        "| N | floor: children (s) | operator: children (s) | ratio "
        "| floor: all Running (s) | operator: all Running (s) | ratio "
        "| API requests per job (operator / floor) | operator peak RSS (MB) | operator CPU (s) "
        "| control-plane CPU (s, floor / operator) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        limit = 120 + n * 0.6
        floor = await run_floor_side(client, n, limit)
        operator = await run_operator_side(client, n, limit)
        print(
            f"| {n} | {floor.children_s:.1f} | {operator.children_s:.1f} "
            f"| {operator.children_s / floor.children_s:.2f} | {floor.running_s:.1f} "
            f"| {operator.running_s:.1f} | {operator.running_s / floor.running_s:.2f} "
            f"| {operator.requests:.1f} / {floor.requests:.1f} | {operator.peak_rss_mb:.0f} "
            f"| {operator.cpu_s:.1f} | {floor.rig_cpu_s:.0f} / {operator.rig_cpu_s:.0f} |",
            flush=True,
        )
    await client.close()


if __name__ == "__main__":
    asyncio.run(main([int(arg) for arg in sys.argv[1:]] or [100, 500, 1000]))
