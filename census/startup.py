"""What every command does first: load the settings (or stop naming the bad variable) and log.

Each package's own click group (``collector.cli``, ``portal.cli``, ...) starts this way, so
the helpers live in the foundation rather than in the top-level command that wires them.
"""

from __future__ import annotations

import logging
import sys

import click

from census.settings import Settings, SettingsError


def load_settings() -> Settings:
    """Load settings or stop with the offending variable named."""
    try:
        return Settings.load()
    except SettingsError as error:
        raise click.ClickException(f"configuration error: {error}") from None


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the configured level."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
