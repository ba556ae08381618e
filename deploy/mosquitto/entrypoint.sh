#!/bin/sh
# Write the services' password files and the ACLs from the environment, then run Mosquitto.
# One user per service (MQTT_*_PASSWORD); the APs' users live in $APS_DIR/passwd, kept by
# `wifi-census firmware ap-cred issue|revoke`. Paths can be moved for tests (*_DIR, CONFIG).
set -eu
: "${MQTT_COLLECTOR_PASSWORD:?set MQTT_COLLECTOR_PASSWORD in .env}"
: "${MQTT_COMMAND_LOG_PASSWORD:?set MQTT_COMMAND_LOG_PASSWORD in .env}"
: "${MQTT_PORTAL_PASSWORD:?set MQTT_PORTAL_PASSWORD in .env}"
: "${MQTT_ANALYTICS_PASSWORD:?set MQTT_ANALYTICS_PASSWORD in .env}"
TOPIC_PREFIX="${TOPIC_PREFIX:-census}"
COLLECTOR_USER="${MQTT_COLLECTOR_USER:-collector-1}"
CONFIG_DIR="${CONFIG_DIR:-/mosquitto/config}"
DATA_DIR="${DATA_DIR:-/mosquitto/data}"
APS_DIR="${APS_DIR:-/mosquitto/aps}"
CONFIG="${CONFIG:-$CONFIG_DIR/mosquitto.conf}"

case "$TOPIC_PREFIX$COLLECTOR_USER" in
    *[!A-Za-z0-9._/-]*) echo "TOPIC_PREFIX / MQTT_COLLECTOR_USER: letters, digits, . _ / - only" >&2
                        exit 1 ;;
esac

umask 077
# Rebuilt from scratch at every start, so a password removed from .env stops working.
rm -f "$DATA_DIR/services.passwd" "$DATA_DIR/portal.passwd"
touch "$DATA_DIR/services.passwd" "$DATA_DIR/portal.passwd"
mosquitto_passwd -b "$DATA_DIR/services.passwd" "$COLLECTOR_USER" "$MQTT_COLLECTOR_PASSWORD"
mosquitto_passwd -b "$DATA_DIR/services.passwd" command-log "$MQTT_COMMAND_LOG_PASSWORD"
mosquitto_passwd -b "$DATA_DIR/services.passwd" analytics "$MQTT_ANALYTICS_PASSWORD"
mosquitto_passwd -b "$DATA_DIR/portal.passwd" portal "$MQTT_PORTAL_PASSWORD"
# An empty AP password file still lets the broker start before the first AP is issued.
[ -f "$APS_DIR/passwd" ] || : > "$APS_DIR/passwd"
for acl in aps services; do
    sed -e "s|@TOPIC_PREFIX@|$TOPIC_PREFIX|g" -e "s|@COLLECTOR_USER@|$COLLECTOR_USER|g" \
        "$CONFIG_DIR/$acl.acl.in" > "$DATA_DIR/$acl.acl"
done
if [ "$(id -u)" = 0 ]; then
    # The AP password file too: `firmware ap-cred` rewrites it keeping this owner and mode.
    chown mosquitto:mosquitto "$DATA_DIR/services.passwd" "$DATA_DIR/portal.passwd" \
        "$DATA_DIR/aps.acl" "$DATA_DIR/services.acl" "$APS_DIR/passwd"
fi
exec mosquitto -c "$CONFIG"
