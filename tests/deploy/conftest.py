"""The deploy suite: manifests (fast), the image built and run under podman (slow;
`ZERO_SKIP_IMAGE=1` skips it locally, CI runs it), deploy/docker-compose.yml run with
podman-compose, and a real Prometheus server."""

import pytest
from deploy_helpers import build_image


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds and runs the container image with podman (skip with ZERO_SKIP_IMAGE=1)")


@pytest.fixture(scope="session")
def image() -> str:
    """The zero image built from this checkout, once per session for every image test."""
    return build_image()
