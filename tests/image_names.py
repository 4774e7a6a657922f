"""The names of kubeforge's container images, read from `hack/images.env`, where they live."""

from __future__ import annotations

from pathlib import Path

IMAGES_ENV = Path(__file__).resolve().parent.parent / "hack" / "images.env"
COMPONENTS = ("operator", "trainer", "crawler")


def image_settings() -> dict[str, str]:
    """The `NAME=value` lines of `hack/images.env`."""
    settings = {}
    for line in IMAGES_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def image_ref(component: str) -> str:
    """`<prefix>/<component>:<tag>`, as `make images` tags it."""
    settings = image_settings()
    return f"{settings['KUBEFORGE_IMAGE_PREFIX']}/{component}:{settings['KUBEFORGE_IMAGE_TAG']}"
