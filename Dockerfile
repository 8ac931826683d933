# syntax=docker/dockerfile:1
# livestream-exporter as an OCI image.
#
#   make image                     # wheels built on the host, then the image (docker or podman)
#   docker run -p 9733:9733 livestream-exporter:<version> --demo --web.listen-address=:9733
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module: the official
# Python image by default; the tests use a local Debian root filesystem instead, so that the
# build needs no registry. Wheels in deploy/image/wheelhouse (made by `make image`) are preferred;
# with PIP_NO_INDEX=1 they are the only source and the build runs with --network=none.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INDEX=${PIP_NO_INDEX} \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY deploy/image/wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# one virtualenv under /opt, byte-compiled here so the read-only root never needs a write
RUN python3 -m venv /opt/livestream-exporter \
 && /opt/livestream-exporter/bin/pip install --find-links /wheelhouse /src \
 && /opt/livestream-exporter/bin/pip uninstall --yes pip \
 && /opt/livestream-exporter/bin/python -m compileall -q /opt/livestream-exporter

FROM ${BASE_IMAGE}
ARG VERSION=0.0.0
ARG SOURCE_URL=https://github.com/livestream-exporter/livestream-exporter
LABEL org.opencontainers.image.title="livestream-exporter" \
      org.opencontainers.image.description="Prometheus exporter for live-stream audience analytics of five vendors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/livestream-exporter /opt/livestream-exporter
# HOME and TMPDIR point at the only writable place; with --read-only, mount a tmpfs there
ENV PATH=/opt/livestream-exporter/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HEALTHCHECK_URL=http://127.0.0.1:9733/-/healthy
# a fixed non-root UID/GID (the "nonroot" of distroless images); no passwd entry is needed
USER 65532:65532
EXPOSE 9733
# Python's own urllib, so the image needs no curl or wget; set HEALTHCHECK_URL when the
# exporter listens elsewhere
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["livestream-exporter"]
CMD ["--config.file", "/etc/livestream-exporter/config.yaml"]
