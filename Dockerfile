# One image for the portal, the collector and analytics (docker-compose.yml picks the command).
# Every Python package in it is the version uv.lock names, checked against the lock's hashes; the
# base image is pinned to a release (tests/test_deployment.py refuses floating tags).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the project's wheel, made with the locked build backend -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY scripts/uv-requirements.txt /tmp/uv-requirements.txt
RUN pip install --require-hashes -r /tmp/uv-requirements.txt
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# Runtime dependencies only (no test tools), and the build backend, each with its hashes.
RUN uv export --frozen --no-dev --no-emit-project --format requirements.txt -o /tmp/runtime.txt \
 && uv export --frozen --only-group build --no-emit-project --format requirements.txt \
      -o /tmp/build.txt \
 && pip install --require-hashes -r /tmp/build.txt
COPY census ./census
COPY timeseries ./timeseries
COPY registry ./registry
COPY collector ./collector
COPY apcommands ./apcommands
COPY analytics ./analytics
COPY portal ./portal
COPY simulator ./simulator
COPY wifi_census ./wifi_census
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# --- the image ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 WIFI_CENSUS_VAR_DIR=/var/lib/wifi-census

# libpcap for the scapy sniffer; fonts so Chinese labels render in heatmap pictures.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /tmp/runtime.txt /tmp/runtime.txt
COPY --from=build /dist /tmp/dist
# The wheel carries its templates, translations, migrations and catalogues: nothing is read from
# a checkout at run time.
RUN pip install --require-hashes -r /tmp/runtime.txt \
 && pip install --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/runtime.txt /tmp/dist
# The AP templates `wifi-census firmware render` fills (WIFI_CENSUS_FIRMWARE_TEMPLATES): files for
# network engineers, shipped beside the package rather than inside it.
COPY firmware_configs /usr/share/wifi-census/firmware_configs

RUN useradd --system --home /var/lib/wifi-census census \
 && mkdir -p /var/lib/wifi-census && chown census /var/lib/wifi-census
USER census
WORKDIR /var/lib/wifi-census
EXPOSE 8080 9100
CMD ["wifi-census", "--help"]
