"""The consumed-sample logs of one TrainingJob's worker pods on kind, gathered while they run.

The trainer appends one line per step to a file of its own under KUBEFORGE_SAMPLE_LOG
(`kubeforge_trainer.sample_log`), here a directory of the pod's /tmp emptyDir. A pod that is
deleted or preempted takes that directory with it, and the kubelet empties the volumes of a pod
that ended, so every worker is followed while it runs: `kubectl exec` of a `tail -f` per log
file, streamed to a file on this machine. A finishing trainer writes its last line before its
final checkpoint, so the stream has it before the container ends. Lines are kept once each, by
(generation, rank, step): a stream started again reads its file from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.helm import tool_binary
from tests.workloads.trainer_runs import ConsumedSamples

SAMPLE_LOG_DIR = "/tmp/kubeforge-samples"  # in the pod's private /tmp emptyDir
SAMPLE_LOG_ENV = {"name": "KUBEFORGE_SAMPLE_LOG", "value": SAMPLE_LOG_DIR}
# Every log file of the pod from its first line, as it grows: a tail per file, since a group that
# re-forms within the pod writes a new file.
FOLLOW = f"""
followed=" "
while :; do
  for file in {SAMPLE_LOG_DIR}/*.jsonl; do
    [ -f "$file" ] || continue
    case $followed in *" $file "*) continue ;; esac
    followed="$followed$file "
    tail -n +1 -s 0.2 -f "$file" &
  done
  sleep 0.5
done
"""


class SampleLogs:
    """The sample logs of the worker pods of one job, followed from this machine."""

    def __init__(self, core: client.CoreV1Api, namespace: str, job: str, directory: Path):
        self.core = core
        self.namespace = namespace
        self.selector = f"batch.kubernetes.io/job-name={job}"
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.streams: dict[str, subprocess.Popen[bytes]] = {}
        """Pod UID -> its latest stream."""
        self.opened = 0
        """Streams started so far: each writes a file of its own."""

    def follow(self) -> None:
        """Streams the log of every worker whose container runs and is not followed yet (or
        whose stream ended while it still runs: the lines are read again, and kept once)."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        for pod in pods:
            uid = pod.metadata.uid
            statuses = pod.status.container_statuses or []
            running = statuses and statuses[0].state.running and not pod.metadata.deletion_timestamp
            stream = self.streams.get(uid)
            if not running or (stream is not None and stream.poll() is None):
                continue
            path = self.directory / f"{pod.metadata.name}-{self.opened}.jsonl"
            self.opened += 1
            with path.open("wb") as out:
                self.streams[uid] = subprocess.Popen(
                    [tool_binary("kubectl"), "--kubeconfig", os.environ["KUBEFORGE_KUBECONFIG"],
                     "exec", "-n", self.namespace, pod.metadata.name, "--", "sh", "-c", FOLLOW],
                    stdout=out, stderr=subprocess.DEVNULL,
                )  # fmt: skip

    def stop(self) -> None:
        """Ends the streams (again, harmlessly, once ended)."""
        for stream in self.streams.values():
            stream.terminate()
            stream.wait(timeout=30)

    def consumed(self) -> ConsumedSamples:
        """Ends the streams and reads what they brought."""
        self.stop()
        lines: dict[tuple[int, int, int], dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.jsonl")):
            for text in path.read_text().splitlines():
                try:
                    line = json.loads(text)
                except json.JSONDecodeError:
                    continue  # the last line of a stream cut while it was written
                lines[(line["generation"], line["rank"], line["step"])] = line
        return ConsumedSamples.of_lines(list(lines.values()))
