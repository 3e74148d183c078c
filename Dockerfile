# syntax=docker/dockerfile:1
# hotplug-agent container image: a slim Python base, the agent and its locked runtime dependencies in a
# virtual environment, nothing else. Build: docker build -t hotplug-agent:0.1.0 .
#
# Stage 1 builds the wheel and installs it with requirements.lock (binary wheels only, so no compiler
# is ever needed); stage 2 copies only that virtual environment onto the same base image (the venv's
# interpreter path must match) and runs as a numeric non-root user (the chart's runAsUser, 65532).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The venv gets no pip of its own: the base image's pip installs into it (pip --python).
RUN python -m venv --without-pip /opt/hotplug-agent
# Dependencies first, exactly as locked: this layer stays cached while only the code changes.
COPY requirements.lock ./
RUN python -m pip --python /opt/hotplug-agent/bin/python install --no-deps --only-binary=:all: \
        --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY agent/ agent/
COPY metrics/ metrics/
COPY simulator/ simulator/
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m pip --python /opt/hotplug-agent/bin/python install --no-deps /dist/*.whl \
 && python -m pip --python /opt/hotplug-agent/bin/python check

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hotplug-agent" \
      org.opencontainers.image.description="Live-migrates KubeVirt VMs so that hot plugged network interfaces reach the guest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hotplug-agent/hotplug-agent"
# Unbuffered logs; bytecode was compiled at install time (the root filesystem is read-only at run time).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    PATH=/opt/hotplug-agent/bin:$PATH
COPY --from=builder /opt/hotplug-agent /opt/hotplug-agent
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["hotplug-agent"]
CMD ["run"]
