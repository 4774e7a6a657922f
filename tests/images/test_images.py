"""The built container images run their entry points as a non-root user, with what each one needs.

Real: the images `make images` built and the local Docker daemon that runs them (`docker run`,
with a read-only root filesystem as the chart and the operator's pods use it). Nothing is built
here: with no Docker daemon, or an image not built yet, the test skips and says which.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence

import pytest

from tests.image_names import COMPONENTS, image_ref

NON_ROOT = "65532:65532"

# Printed from inside an image: who runs it and what it can import.
PROBE = """
import importlib.metadata, importlib.util, json, os, pwd, sys
print(json.dumps({
    "uid": os.getuid(),
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "gid": os.getgid(),
    "python": "%d.%d" % sys.version_info[:2],
    "kubeforge": importlib.metadata.version("kubeforge"),
    "torch": importlib.util.find_spec("torch") is not None,
    "wheels_left": os.path.exists("/wheels"),
}))
"""


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def docker_daemon() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker command: the images can only be checked where Docker runs")
    if docker("info", timeout=30).returncode != 0:
        pytest.skip("no Docker daemon answers (hack/docker.sh up starts one)")


def built(component: str) -> str:
    image = image_ref(component)
    if docker("image", "inspect", image, timeout=30).returncode != 0:
        pytest.skip(f"{image} is not built (make images)")
    return image


def image_env(image: str) -> dict[str, str]:
    """The environment the image sets (its ENV lines)."""
    lines = json.loads(docker("image", "inspect", "-f", "{{json .Config.Env}}", image).stdout)
    return dict(line.partition("=")[::2] for line in lines)


def run(image: str, *command: str, entrypoint: Sequence[str] = ()) -> str:
    """Runs the image as the chart runs it (read-only root, a writable /tmp) and returns stdout."""
    options = ["--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none"]
    if entrypoint:
        options += ["--entrypoint", entrypoint[0]]
        command = (*entrypoint[1:], *command)
    result = docker("run", *options, image, *command)
    assert result.returncode == 0, f"{image} {command}: {result.stderr[-2000:]}"
    return result.stdout


def probe(image: str) -> dict[str, object]:
    facts: dict[str, object] = json.loads(run(image, "-c", PROBE, entrypoint=["python"]))
    return facts


@pytest.mark.usefixtures("docker_daemon")
@pytest.mark.parametrize("component", COMPONENTS)
def test_image_runs_its_entry_point_as_non_root(component: str) -> None:
    image = built(component)
    user = docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
    # Numeric, so that the kubelet can enforce runAsNonRoot without a passwd lookup.
    assert user == NON_ROOT
    assert f"usage: python -m kubeforge_{component}" in run(image, "--help")
    facts = probe(image)
    assert (facts["uid"], facts["gid"]) == (65532, 65532)
    # kopf and torch ask for the user's name: a uid without a passwd entry crashes them.
    assert facts["user"] == "kubeforge"
    assert facts["python"] == "3.11"
    assert facts["kubeforge"]
    assert facts["wheels_left"] is False, "the build stage's wheels leaked into the image"
    # Only the trainer asks the NVIDIA container runtime for the node's GPUs (empty: none).
    gpus = image_env(image).get("NVIDIA_VISIBLE_DEVICES", "")
    assert gpus == ("all" if component == "trainer" else ""), gpus


@pytest.mark.usefixtures("docker_daemon")
def test_operator_image_has_no_torch() -> None:
    assert probe(built("operator"))["torch"] is False


@pytest.mark.usefixtures("docker_daemon")
def test_trainer_image_has_cuda_capable_torch_and_the_launcher() -> None:
    image = built("trainer")
    cuda = run(image, "-c", "import torch; print(torch.version.cuda)", entrypoint=["python"])
    assert cuda.strip() not in ("", "None"), "torch in the trainer image is a CPU-only build"
    # What a worker pod runs: torchrun through the launcher, which starts the trainer.
    launcher = run(image, "-m", "kubeforge.launch", "--help", entrypoint=["python"])
    assert "--nproc-per-node" in launcher
    step = "import torch; w = torch.ones(4, requires_grad=True); (w * 2).sum().backward(); "
    step += "print(w.grad.tolist())"
    assert run(image, "-c", step, entrypoint=["python"]).strip() == "[2.0, 2.0, 2.0, 2.0]"
    # The BPE tokenizers (Rust) the language models read their datasets with, and safetensors
    # (Rust), the weights of the Hugging Face folders a Llama is exported to and starts from.
    tokenizers = "import tokenizers, safetensors.torch, kubeforge_trainer.hugging_face; print('ok')"
    assert run(image, "-c", tokenizers, entrypoint=["python"]).strip() == "ok"


@pytest.mark.usefixtures("docker_daemon")
def test_crawler_image_loads_its_native_extensions() -> None:
    image = built("crawler")
    modules = "py3langid.langid, selectolax.lexbor, brotli, zstandard, xxhash, numpy, "
    modules += "fastwarc.warc, tokenizers"
    imports = f"import {modules}; import kubeforge_crawler.pipeline, kubeforge_crawler.warc; "
    imports += "print('ok')"
    assert run(image, "-c", imports, entrypoint=["python"]).strip() == "ok"
