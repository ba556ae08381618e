"""The translation catalogs: every message translated, compiled files up to date."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

TRANSLATIONS = Path(__file__).resolve().parents[2] / "portal" / "translations"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def test_every_message_has_a_chinese_translation_with_the_same_placeholders() -> None:
    """zh-CN is the default language: nothing may fall back to English."""
    with (TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    messages = [m for m in catalog if m.id]
    assert len(messages) > 100
    for message in messages:
        assert message.string, f"untranslated: {message.id!r}"
        assert sorted(PLACEHOLDER.findall(str(message.id))) == sorted(
            PLACEHOLDER.findall(str(message.string))), message.id


def test_compiled_catalogs_match_their_sources() -> None:
    """The committed .mo files are compiled from the committed .po files."""
    for locale in ("zh_Hans_CN", "en"):
        folder = TRANSLATIONS / locale / "LC_MESSAGES"
        with (folder / "messages.po").open("rb") as handle:
            source = {m.id: m.string for m in read_po(handle) if m.id and m.string}
        compiled = read_mo(BytesIO((folder / "messages.mo").read_bytes()))
        assert {m.id: m.string for m in compiled if m.id} == source, locale


def test_the_template_lists_every_message_of_the_catalogs() -> None:
    """messages.pot (for pybabel update) and the catalogs have the same message ids."""
    with (TRANSLATIONS / "messages.pot").open("rb") as handle:
        template = {m.id for m in read_po(handle) if m.id}
    with (TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        assert {m.id for m in read_po(handle) if m.id} == template
