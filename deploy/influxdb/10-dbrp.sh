#!/bin/bash
# Runs once, after the image's automated setup: map the v1 database name that wifi-census
# writes to (line protocol /write, InfluxQL /query) onto the bucket, so the same code path
# serves InfluxDB 1.x and 2.x.
set -euo pipefail
influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"
