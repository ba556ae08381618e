"""Resident pages rendered once per language and place, then filled in per request.

The sign-in pages differ between residents only in a few values (the flow and CSRF tokens, a
masked phone number or name, a link). Rendering them through Jinja, Flask-Babel and WTForms on
every request was a good part of each request's CPU; instead a page is rendered once with a
marker in place of each such value, kept as its literal pieces, and joined with the values.
A change of the registry (``directory.version``) or of the language is a different key. At
most ``limit`` pages are kept per process (a splash page with a hundred units is ~10 kB); past
that the least recently used page goes, so a district's busy APs keep theirs while its quiet
ones are rendered in full when someone comes.

Values are escaped here for HTML text and attributes. A value that is also put into a URL
(the flow token in the language link) must be URL-safe as it is: ``fill`` refuses anything
else, and the caller then renders the page in full.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping

from markupsafe import escape

# Characters that read the same in HTML text, attributes and URL query values.
URL_SAFE = re.compile(r"\A[A-Za-z0-9_.\-]*\Z")


class PageCache:
    """Pages split at their per-request values, by key."""

    def __init__(self, limit: int = 2000) -> None:
        self._pages: OrderedDict[Hashable, tuple[tuple[str, ...], tuple[str, ...]]] = (
            OrderedDict())
        self._limit = limit
        self._lock = threading.Lock()
        # Markers: letters and digits only, so that no escaping or URL quoting changes them.
        self._salt = secrets.token_hex(6)

    def fill(self, key: Hashable, render: Callable[[Mapping[str, str]], str],
             text: Mapping[str, str], url_safe: Mapping[str, str] | None = None) -> str | None:
        """The page for key with the values in place; None when a url_safe value is not.

        render(markers) renders the page with markers[name] where each value goes; text values
        are HTML-escaped, url_safe values must match URL_SAFE.
        """
        safe = url_safe or {}
        if any(not URL_SAFE.match(value) for value in safe.values()):
            return None
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
        if page is None:
            page = self._split(render, [*text, *safe])
            with self._lock:
                self._pages[key] = page
                while len(self._pages) > self._limit:
                    self._pages.popitem(last=False)
        pieces, names = page
        values = {name: str(escape(value)) for name, value in text.items()}
        values.update(safe)
        out = [pieces[0]]
        for name, piece in zip(names, pieces[1:], strict=True):
            out.append(values[name])
            out.append(piece)
        return "".join(out)

    def _split(self, render: Callable[[Mapping[str, str]], str], names: list[str]
               ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Render with markers and cut the page at each of them."""
        markers = {name: f"zq{self._salt}m{i}q" for i, name in enumerate(names)}
        by_marker = {marker: name for name, marker in markers.items()}
        html = render(markers)
        parts = re.split("(" + "|".join(markers.values()) + ")", html)
        return tuple(parts[0::2]), tuple(by_marker[m] for m in parts[1::2])
