"""Shared foundation of wifi-census: settings, the command line, local services, privacy
primitives, the presence-event model, the MQTT client wrapper and the time-series store."""

__version__ = "0.1.0"
