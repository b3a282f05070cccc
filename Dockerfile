# syntax=docker/dockerfile:1
# The Hanse node image: CPU-only PyTorch, the `hanse` entry point, a non-root user.
#   docker build -t ghcr.io/hanse-dataspace/hanse:0.1.0 .
# No secrets go into the image: certificates, the admin token and the database URL are
# mounted at run time (see helm/hanse-node).
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtualenv with CPU torch, the dependencies and the project ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/hanse
ENV PATH=/opt/hanse/bin:$PATH
# CPU build first, from PyTorch's CPU index: 2.13.0+cpu satisfies the project's torch==2.13.0,
# so the next step does not pull the multi-GB CUDA build from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY federation ./federation
COPY node ./node
RUN pip install . \
 && hanse --help >/dev/null

# --- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hanse" \
      org.opencontainers.image.description="Hanse node: federated, sovereign data-space connector for cities" \
      org.opencontainers.image.source="https://github.com/hanse-dataspace/hanse" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 hanse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/hanse --no-create-home \
      --shell /usr/sbin/nologin hanse \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/hanse
COPY --from=builder /opt/hanse /opt/hanse
ENV PATH=/opt/hanse/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric user, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/hanse
# protocol (mTLS), management (TLS + token), health (plaintext gRPC), metrics.
EXPOSE 7443 7444 7445 9464
ENTRYPOINT ["hanse"]
CMD ["--help"]
