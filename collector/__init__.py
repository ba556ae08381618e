"""The collector: AP events from MQTT into InfluxDB (presence) and Redis (who is here now).

Pipeline: ``census.mqtt`` (transport) -> ``collector.parser`` (pure: topic and payload to
events and rejects) -> ``timeseries.presence`` (idempotent line protocol) -> ``collector.service``
(batches, InfluxDB or the on-disk spool, Redis, acknowledgements). ``collector.sniffer`` turns
802.11 frames into the same events. See collector/README.md and docs/collector.md.
"""
