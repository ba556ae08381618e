# shellcheck shell=sh
# Shared by census-publisher and census-agent (sourced, never run): configuration, logging,
# and the broker arguments every mosquitto_pub / mosquitto_sub call needs.
# Written for BusyBox ash on OpenWrt; POSIX sh only (checked with `shellcheck -s sh`).

# Bracket ranges in `case` patterns must mean ASCII, whatever the locale.
LC_ALL=C
export LC_ALL

CENSUS_CONF=${CENSUS_CONF:-/etc/wifi-census/ap.conf}

census_log() {
	# census_log LEVEL MESSAGE...: one line on stderr; procd sends it to syslog (logread).
	level=$1
	shift
	printf '%s %s: %s\n' "${CENSUS_NAME:-census}" "$level" "$*" >&2
}

census_die() {
	census_log error "$*"
	exit 1
}

census_load_config() {
	# Source ap.conf, fill the defaults, and stop with a message naming a bad key.
	[ -r "$CENSUS_CONF" ] || census_die "cannot read $CENSUS_CONF (copy ap.conf.example and fill it in)"
	# shellcheck disable=SC1090
	. "$CENSUS_CONF"
	TOPIC_PREFIX=${TOPIC_PREFIX:-census}
	BROKER_PORT=${BROKER_PORT:-1883}
	SNAPSHOT_INTERVAL=${SNAPSHOT_INTERVAL:-300}
	SPOOL_DIR=${SPOOL_DIR:-/tmp/wifi-census/spool}
	SPOOL_MAX_FILES=${SPOOL_MAX_FILES:-500}
	CONFIRM_RESEND_S=${CONFIRM_RESEND_S:-120}
	SESSION_DEFAULT_MINUTES=${SESSION_DEFAULT_MINUTES:-1440}
	census_check_ap_id "$AP_ID" || census_die "AP_ID='$AP_ID': must be 1-64 of A-Z a-z 0-9 . _ -"
	[ -n "$BROKER_HOST" ] || census_die "BROKER_HOST is empty"
	census_is_count "$BROKER_PORT" || census_die "BROKER_PORT='$BROKER_PORT': must be a whole number"
	if ! census_is_count "$SNAPSHOT_INTERVAL" || [ "$SNAPSHOT_INTERVAL" -eq 0 ]; then
		census_die "SNAPSHOT_INTERVAL='$SNAPSHOT_INTERVAL': must be a whole number of seconds above 0"
	fi
	if ! census_is_count "$SPOOL_MAX_FILES" || [ "$SPOOL_MAX_FILES" -eq 0 ]; then
		census_die "SPOOL_MAX_FILES='$SPOOL_MAX_FILES': must be a whole number above 0"
	fi
	census_is_count "$CONFIRM_RESEND_S" ||
		census_die "CONFIRM_RESEND_S='$CONFIRM_RESEND_S': must be a whole number of seconds (0: off)"
	case $TOPIC_PREFIX in
	*[!A-Za-z0-9._-]* | '') census_die "TOPIC_PREFIX='$TOPIC_PREFIX': letters, digits, . _ - only" ;;
	esac
	for census_file in "$BROKER_PASSWORD_FILE" "$BROKER_CAFILE" "$BROKER_CERTFILE" "$BROKER_KEYFILE"; do
		[ -z "$census_file" ] || [ -r "$census_file" ] || census_die "cannot read $census_file (named in $CENSUS_CONF)"
	done
	if [ -n "$BROKER_CERTFILE" ] && [ -z "$BROKER_KEYFILE" ]; then
		census_die "BROKER_CERTFILE is set but BROKER_KEYFILE is empty"
	fi
	# shellcheck disable=SC2034 # used by the scripts that source this file
	CENSUS_TOPIC_BASE="$TOPIC_PREFIX/v1/ap/$AP_ID"
}

census_check_ap_id() {
	# The contract's AP id: [A-Za-z0-9._-]{1,64}.
	case $1 in
	'' | *[!A-Za-z0-9._-]*) return 1 ;;
	esac
	[ "${#1}" -le 64 ]
}

census_is_count() {
	# A whole number, digits only.
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	return 0
}

census_mqtt() {
	# census_mqtt [--exec] PROGRAM ARGS...: run mosquitto_pub or mosquitto_sub against the
	# configured broker (address, credentials, TLS), with ARGS appended. --exec replaces the
	# calling (sub)shell, so `( census_mqtt --exec ... ) &` leaves $! the client's own pid.
	census_exec=
	if [ "$1" = --exec ]; then
		census_exec=1
		shift
	fi
	census_program=$1
	shift
	set -- -h "$BROKER_HOST" -p "$BROKER_PORT" "$@"
	if [ -n "$BROKER_USER" ]; then
		set -- "$@" -u "$BROKER_USER"
	fi
	if [ -n "$BROKER_PASSWORD_FILE" ]; then
		# mosquitto's clients take the password only as an argument (seen by `ps` as root on
		# the AP, where nothing else runs): read it fresh each time so a rotation needs no restart.
		set -- "$@" -P "$(cat "$BROKER_PASSWORD_FILE")"
	fi
	if [ -n "$BROKER_CAFILE" ]; then
		set -- "$@" --cafile "$BROKER_CAFILE"
	fi
	if [ -n "$BROKER_CERTFILE" ]; then
		set -- "$@" --cert "$BROKER_CERTFILE" --key "$BROKER_KEYFILE"
	fi
	if [ -n "$census_exec" ]; then
		exec "$census_program" "$@"
	fi
	if [ "$census_program" = mosquitto_pub ] && [ -n "${CENSUS_MQTT_TIMEOUT:-}" ] &&
		command -v timeout >/dev/null 2>&1; then
		# A broker that does not answer (no RST) would hold a publish for minutes.
		timeout "$CENSUS_MQTT_TIMEOUT" "$census_program" "$@"
	else
		"$census_program" "$@"
	fi
}

census_nap() {
	# census_nap SECONDS: sleep, but in the background and waited for, so that a TERM trap
	# runs at once (a shell runs traps only after a foreground command ends) and can end
	# the sleep too ($CENSUS_NAP_PID): stopping a service leaves no `sleep` behind.
	sleep "$1" &
	CENSUS_NAP_PID=$!
	wait "$CENSUS_NAP_PID"
	CENSUS_NAP_PID=
}

census_stop_nap() {
	# For TERM traps: end a census_nap in progress.
	if [ -n "${CENSUS_NAP_PID:-}" ]; then
		kill "$CENSUS_NAP_PID" 2>/dev/null
	fi
}

census_now() {
	date +%s
}
