# syntax=docker/dockerfile:1
# hotplug-agent container image: a slim Python base, the agent and its locked runtime dependencies in a
# virtual environment, nothing else (no simulator, no build tools). Build:
#
#   docker build -t hotplug-agent:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg PYTHON_IMAGE="python:3.11.14-slim-bookworm@sha256:<digest>" .
#
# Stage 1 installs requirements.lock and the build backend of requirements-build.lock, both with pip
# --require-hashes (binary wheels only, so no compiler is ever needed), and builds and installs the wheel
# of agent/ and metrics/ (the simulator is not in the build context: `hotplug-agent simulate` says so);
# stage 2 copies only that virtual environment onto the same base image (the venv's interpreter path must
# match) and runs as a numeric non-root user (the chart's runAsUser, 65532).
#
# The base image is pinned by tag here, not by digest: a digest can only be read from the registry, which
# this project's build machines cannot reach, and a digest nobody verified is worse than none. Release
# builds pass the digest they resolved (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`)
# in PYTHON_IMAGE as above; docs/install.md says how.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The venv gets no pip of its own: the base image's pip installs into it (pip --python).
RUN python -m venv --without-pip /opt/hotplug-agent
# Dependencies first, exactly as locked and hash-checked: this layer stays cached while the code changes.
COPY requirements.lock requirements-build.lock ./
RUN python -m pip --python /opt/hotplug-agent/bin/python install --no-deps --only-binary=:all: \
        --require-hashes --requirement requirements.lock \
 && python -m pip install --no-deps --only-binary=:all: --require-hashes --requirement requirements-build.lock
COPY pyproject.toml README.md LICENSE ./
COPY agent/ agent/
COPY metrics/ metrics/
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && python -m pip --python /opt/hotplug-agent/bin/python install --no-deps /dist/*.whl \
 && python -m pip --python /opt/hotplug-agent/bin/python check

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
# The commit and the build time, from the release pipeline (see the top of this file).
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hotplug-agent" \
      org.opencontainers.image.description="Live-migrates KubeVirt VMs so that hot plugged network interfaces reach the guest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hotplug-agent/hotplug-agent"
# Unbuffered logs; bytecode was compiled at install time (the root filesystem is read-only at run time).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    PATH=/opt/hotplug-agent/bin:$PATH
COPY --from=builder /opt/hotplug-agent /opt/hotplug-agent
# The license text where image scanners look for it (also in the wheel's dist-info in the venv).
COPY LICENSE /licenses/LICENSE
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["hotplug-agent"]
CMD ["run"]
