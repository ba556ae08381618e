"""Constants of the collector: rejection reasons, Redis TTLs and defaults."""

from __future__ import annotations

# Why an event (or a whole message) was dead-lettered: docs/contracts.md, section 2.
REASON_BAD_JSON = "bad_json"
REASON_OVERSIZED = "oversized"
REASON_BAD_FIELD = "bad_field"
REASON_BAD_VERSION = "bad_version"
REASON_UNKNOWN_AP = "unknown_ap"
REASON_BAD_TIMESTAMP = "bad_timestamp"
REASON_AP_MISMATCH = "ap_mismatch"
REASON_BAD_TOPIC = "bad_topic"
# InfluxDB refused a batch the collector built (HTTP 4xx): kept on disk, never retried.
REASON_STORE_REJECTED = "store_rejected"

REASONS = (
    REASON_BAD_JSON,
    REASON_OVERSIZED,
    REASON_BAD_FIELD,
    REASON_BAD_VERSION,
    REASON_UNKNOWN_AP,
    REASON_BAD_TIMESTAMP,
    REASON_AP_MISMATCH,
    REASON_BAD_TOPIC,
    REASON_STORE_REJECTED,
)

# An event may be at most this far in the future (AP clocks drift; NTP may be late).
MAX_FUTURE_S = 300.0

# Redis live presence (contracts section 7).
PRESENCE_TTL_S = 900
DEADLETTER_MAX_ENTRIES = 10_000
DEADLETTER_PAYLOAD_BYTES = 4096
# At most this many dead-letter samples per reason per flushed batch: counts are exact, samples
# are samples, so a flood of bad input cannot turn into a flood of Redis writes.
DEADLETTER_SAMPLES_PER_BATCH = 20
