#!/usr/bin/env bash
# Tools for the deploy tests (tests/deploy/: podman, podman-compose, promtool), and the
# local base image the image and compose tests build FROM. Idempotent: installs only what
# is missing, builds the base image only when podman does not have it yet (about 1 minute,
# once per machine).
#
#   bash scripts/ci_image_setup.sh            # packages + base image
#   bash scripts/ci_image_setup.sh --packages # packages only
#
# Needs root (apt-get). The base image stands in for the official python:3.11-slim,
# which no registry here serves: a Debian bookworm minbase with python3 and venv,
# carrying the host's CA bundle (package downloads go through a proxy only the host
# trusts).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${ZERO_BASE_IMAGE:-localhost/zero-base:bookworm}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/scripts/containers.conf}"

missing=()
for pair in podman:podman runc:runc debootstrap:debootstrap podman-compose:podman-compose \
            promtool:prometheus prometheus:prometheus; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # podman as checked on these machines (with its recommends: netavark, slirp4netns,
    # uidmap...); runc because crun fails here; podman-compose (Debian's 1.0.3) runs
    # deploy/docker-compose.yml in tests/deploy/test_compose.py. prometheus (server +
    # promtool) without recommends: the node exporter and its monitoring tools are not needed.
    apt-get install -y -q podman runc debootstrap podman-compose
    apt-get install -y -q --no-install-recommends prometheus
fi
# The Debian prometheus package starts a system service on install; the tests start
# their own server on a free port and need nothing listening on :9090.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi

[ "${1:-}" = "--packages" ] && exit 0

if podman image exists "$BASE_IMAGE"; then
    echo "base image $BASE_IMAGE: cached"
    exit 0
fi
rootfs="$(mktemp -d /var/tmp/zero-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "base image $BASE_IMAGE: debootstrap bookworm into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >"$rootfs.log" 2>&1 \
    || { tail -30 "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --quiet - "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE: built"
