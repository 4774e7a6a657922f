"""Argo CD's health checks for kubeforge's resources, run as Argo CD runs them.

Argo CD evaluates a resource's `health.lua` with gopher-lua (Lua 5.1) and the resource as the
global `obj`; the script returns `{status, message}`. lupa's embedded Lua 5.1 runs the committed
scripts the same way, from PyPI alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lupa.lua51

from tests.conftest import REPO_ROOT

HEALTH_DIR = REPO_ROOT / "manifests" / "gitops" / "argocd" / "health"
SCRIPTS = {"TrainingJob": "trainingjob.lua", "DataIngest": "dataingest.lua"}


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def health(resource: dict[str, Any]) -> Health:
    """The health Argo CD shows for a TrainingJob or DataIngest."""
    runtime = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(resource, recursive=True)
    script = (HEALTH_DIR / SCRIPTS[resource["kind"]]).read_text()
    result = runtime.execute(script)
    return Health(str(result["status"]), str(result["message"]))
