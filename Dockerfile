# One image for the portal, the collector and analytics (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    WIFI_CENSUS_VAR_DIR=/var/lib/wifi-census

# libpcap for the scapy sniffer; fonts so Chinese labels render in heatmap pictures.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY census ./census
COPY registry ./registry
COPY collector ./collector
COPY analytics ./analytics
COPY portal ./portal
COPY simulator ./simulator
# The AP templates `wifi-census firmware render` fills (WIFI_CENSUS_FIRMWARE_TEMPLATES).
COPY firmware_configs ./firmware_configs
RUN pip install .

RUN useradd --system --home /var/lib/wifi-census census \
 && mkdir -p /var/lib/wifi-census && chown census /var/lib/wifi-census
USER census
EXPOSE 8080 9100
CMD ["wifi-census", "--help"]
