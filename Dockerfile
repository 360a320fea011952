# The zero daemon's image.
#
#   podman build --format docker -t zero .        (or: docker build -t zero .)
#   podman run --rm -p 5080:5080 -p 6080:6080 -v zw:/data zero
#
# BASE_IMAGE must provide python3 (3.11+) with the venv module; pip is not needed in it.
# The official slim image is the default; tests build FROM a debootstrapped Debian
# (scripts/ci_image_setup.sh) because no registry is reachable there. Build with
# `--format docker` under podman: the OCI format drops HEALTHCHECK.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: a venv with zero and its dependencies -------------------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/zero
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a source change reuses this layer.
COPY pyproject.toml ./
RUN /opt/zero/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/zero/bin/pip install --quiet -r requirements.txt
COPY README.md ./
COPY raftcore ./raftcore
COPY zero ./zero
RUN /opt/zero/bin/pip install --quiet . \
 && /opt/zero/bin/zero run --help > /dev/null \
 && /opt/zero/bin/pip uninstall --quiet --yes pip setuptools

# ---- final: the venv only (no compilers, no pip cache, no sources) ---------------------
FROM ${BASE_IMAGE}
ARG ZERO_UID=10001
RUN groupadd --gid ${ZERO_UID} zero \
 && useradd --uid ${ZERO_UID} --gid zero --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin zero \
 && mkdir -p /data \
 && chown zero:zero /data \
 && chmod 0750 /data
COPY --from=build /opt/zero /opt/zero
COPY deploy/docker/healthcheck.py /opt/zero/bin/zero-healthcheck
ENV PATH=/opt/zero/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER ${ZERO_UID}:${ZERO_UID}
WORKDIR /data
VOLUME ["/data"]
# gRPC (Zero, ZeroAdmin, Raft, health) and HTTP (/health, /live, /state, /metrics).
EXPOSE 5080 6080
# /health is 200 only while this zero serves (a leader known, quorum/leader contact,
# applied close to commit). The probe reads ZERO_HTTP_ADDR for the port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/zero/bin/zero-healthcheck"]
# Exec form: zero is PID 1 and receives SIGTERM itself (graceful stop, WAL synced, exit 0).
ENTRYPOINT ["zero"]
CMD ["run", "--data-dir", "/data"]
