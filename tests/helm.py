"""The Helm chart as tests use it: the helm binary, and the chart rendered with given values.

helm is the pinned build `make tools` puts in the tools cache (or $HELM, or one on PATH), so the
tests render with the same helm the README tells users to run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "charts" / "kubeforge"
Manifest = dict[str, Any]
TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubeforge" / "bin"


def tool_binary(name: str) -> str:
    """A pinned tool the tests run (helm, kubectl): $NAME, one on PATH, or the build `make
    tools` puts in the tools cache; the test fails (never skips) without one."""
    found = os.environ.get(name.upper()) or shutil.which(name) or None
    if found:
        return found
    if (TOOLS / name).is_file():
        return str(TOOLS / name)
    pytest.fail(f"{name} not found: build it with `make tools` (hack/build-tools.sh)")


def helm_binary() -> str:
    return tool_binary("helm")


def helm(*args: str) -> str:
    """Runs helm and returns its output; a failure shows helm's own message."""
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def values_args(values: Mapping[str, Any]) -> list[str]:
    """`--set-json` arguments for a (nested) mapping of values."""
    return [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "kf",
    namespace: str = "kubeforge-system",
    extra: Sequence[str] = (),
) -> list[Manifest]:
    """The chart's objects as `helm template` renders them with these values (dotted keys)."""
    out = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *values_args(values or {}),
        *extra,
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_error(values: Mapping[str, Any]) -> str:
    """What helm says when it refuses to render with these values (fails if it renders)."""
    result = subprocess.run(
        [helm_binary(), "template", "kf", str(CHART), *values_args(values)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0, f"helm rendered with {values}"
    return result.stderr


def by_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in by_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}: {[m['metadata'] for m in found]}"
    return found[0]
