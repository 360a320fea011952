"""The deploy suite: manifests (fast), the image built and run under podman (slow;
`ZERO_SKIP_IMAGE=1` skips it locally, CI runs it), and a real Prometheus server."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds and runs the container image with podman (skip with ZERO_SKIP_IMAGE=1)")
