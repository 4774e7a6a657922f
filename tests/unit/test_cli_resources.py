"""`kubeforge validate` and the loading of `kubeforge run`: resources checked offline with the API
models, every problem named by its field as the apiserver names it. Pure: no cluster, no process."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.cli.demo import demo_file
from kubeforge.cli.main import EXIT_INVALID, main
from kubeforge.cli.resources import InvalidResources, load_resources

REPO = Path(__file__).resolve().parents[2]
INVALID = """\
apiVersion: kubeforge.dev/v1alpha1
kind: TrainingJob
metadata: {name: broken}
spec:
  image: kubeforge/trainer:0.1.0
  replicas: 0
  trainer:
    model: {architecture: cnn}
    steps: 10
    batch: {globalSize: 4, microSize: 8}
  colour: blue
---
apiVersion: kubeforge.dev/v1alpha1
kind: TrainingJob
metadata: {name: both}
spec:
  image: kubeforge/trainer:0.1.0
  replicas: 2
  minReplicas: 3
  command: [train.py]
---
kind: CronJob
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "resources.yaml"
    path.write_text(text)
    with pytest.raises(InvalidResources) as invalid:
        load_resources(path)
    return invalid.value.problems


def test_every_problem_is_named_by_its_field(tmp_path: Path) -> None:
    problems = [problem.split(": ", 1)[1] for problem in _problems(tmp_path, INVALID)]
    assert problems == [
        'TrainingJob "broken" is invalid: spec.trainer.model.architecture: Unsupported value: '
        '"cnn": supported values: "mlp", "gpt", "llama"',
        'TrainingJob "broken" is invalid: spec.trainer.batch.microSize: Invalid value: "object": '
        "microSize must not exceed globalSize",
        'TrainingJob "broken" is invalid: spec.replicas: Invalid value: 0: should be greater '
        "than or equal to 1",
        'TrainingJob "broken" is invalid: spec.colour: Forbidden: unknown field "spec.colour"',
        'TrainingJob "both" is invalid: spec.minReplicas: Invalid value: "object": minReplicas '
        "must not exceed replicas",
        'kind: Unsupported value: "CronJob": supported values: "DataIngest", "TrainingJob"',
    ]


def test_a_missing_name_and_a_duplicate_are_refused(tmp_path: Path) -> None:
    job = "kind: TrainingJob\nmetadata: {name: %s}\nspec: {image: x, command: [a]}\n"
    problems = _problems(tmp_path, job % "Bad_Name" + "---\n" + job % "x" + "---\n" + job % "x")
    assert "metadata.name: Invalid value" in problems[0]
    assert problems[1].endswith('TrainingJob "x" appears twice')


BAD_QUANTITIES = """\
apiVersion: kubeforge.dev/v1alpha1
kind: TrainingJob
metadata: {name: gpus}
spec:
  image: kubeforge/trainer:0.1.0
  trainer: {model: {architecture: mlp}, steps: 10}
  resources:
    requests: {cpu: "-500m", memory: 4GB}
    limits: {nvidia.com/gpu: -1, memory: 8Gi}
---
apiVersion: kubeforge.dev/v1alpha1
kind: DataIngest
metadata: {name: crawl}
spec:
  sources: {seeds: ["https://example.com/"]}
  crawl: {userAgent: {product: AcmeBot, contact: bot@acme.example}}
  storage: {bucket: acme}
  resources: {limits: {example.com/fpga: 1e3.5}}
"""


def test_negative_and_malformed_quantities_are_named_by_their_resource(tmp_path: Path) -> None:
    quantity = "must be a non-negative quantity such as 500m, 4Gi or 2"
    assert [
        problem.split(" is invalid: ", 1)[1] for problem in _problems(tmp_path, BAD_QUANTITIES)
    ] == [
        f'spec.resources.requests[cpu]: Invalid value: "-500m": {quantity}',
        f'spec.resources.requests[memory]: Invalid value: "4GB": {quantity}',
        f"spec.resources.limits[nvidia.com/gpu]: Invalid value: -1: {quantity}",
        f'spec.resources.limits[example.com/fpga]: Invalid value: "1e3.5": {quantity}',
    ]


SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def test_the_demos_are_samples() -> None:
    """The demo's files are in manifests/samples/, for a cluster as for `kubeforge run --local`."""
    linked = {path.resolve() for path in SAMPLES}
    assert {demo_file("gpt").resolve(), demo_file("mlp").resolve()} <= linked


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_the_samples_are_valid(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    assert "is valid" in capsys.readouterr().out


def test_validate_exits_2_and_prints_the_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    assert main(["validate", str(path)]) == EXIT_INVALID
    assert "spec.replicas: Invalid value: 0" in capsys.readouterr().out


def test_run_with_an_invalid_file_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    state = tmp_path / "state"
    assert main(["run", str(path), "--local", "--state-dir", str(state)]) == EXIT_INVALID
    errors = capsys.readouterr().err
    assert "spec.replicas: Invalid value: 0" in errors
    assert "nothing was run" in errors
    assert not state.exists()


def test_validate_keeps_a_long_path_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ("deep-" * 20) / "trainingjob.yaml"
    path.parent.mkdir()
    path.write_text((REPO / "manifests" / "samples" / "trainingjob.yaml").read_text())
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f'{path}: TrainingJob "digits-mlp" is valid\n'
