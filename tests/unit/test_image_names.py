"""The image names in `hack/images.env` agree with the ones the samples and the operator use.

`make images` tags what it builds from `hack/images.env`; the TrainingJob sample names the trainer
image and the operator falls back to a default crawler image. A tag changed in one place only would
leave the kind path pulling an image that was never built.
"""

from __future__ import annotations

import yaml

from kubeforge_operator.dataingest import builders
from tests.conftest import REPO_ROOT
from tests.image_names import image_ref, image_settings


def test_images_env_names_all_three_images() -> None:
    settings = image_settings()
    assert settings["KUBEFORGE_IMAGE_PREFIX"]
    assert settings["KUBEFORGE_IMAGE_TAG"]
    assert settings["KUBEFORGE_BASE_IMAGE"]


def test_trainingjob_sample_uses_the_built_trainer_image() -> None:
    sample = yaml.safe_load((REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml").read_text())
    assert sample["spec"]["image"] == image_ref("trainer")


def test_operator_default_crawler_image_is_the_built_one() -> None:
    assert image_ref("crawler") == builders.DEFAULT_IMAGE
