"""Stand-in for OpenWrt's ``jsonfilter`` (project/jsonpath.git), for the subset the AP scripts use.

Debian has no jsonfilter, so the tests run the AP scripts with this one. It follows the real
tool's ``main.c`` where the scripts depend on it: ``-s``/``-i`` input, ``-e`` and ``-t`` with or
without a ``VAR=`` prefix, ``export VAR=...; `` output quoted as jsonfilter quotes it (strings in
single quotes, ``'"'"'`` for a quote, object keys and array indexes joined by ``\\ ``, booleans
as 1/0), exit 1 when an expression matches nothing and 126 when the input is not JSON (json-c,
like ``raw_decode``, stops after the first complete value). Paths: ``@``, ``.name``,
``["name"]``, ``['name']`` and ``[N]``; anything else is a usage error here (exit 2), so a script
that starts using more of jsonpath fails its tests instead of passing on a guess.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)"""
                   r"""|\[\s*"([^"]*)"\s*\]|\[\s*'([^']*)'\s*\]|\[(\d+)\]""")
_MISSING = object()


def quote(text: str) -> str:
    """A string as jsonfilter prints it for shell eval."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def walk(value: Any, path: str) -> Any:
    """The value at a path below @, or _MISSING."""
    if not path.startswith("@"):
        raise SystemExit(f"jsonfilter stand-in: unsupported pattern {path!r}")
    rest = path[1:]
    while rest:
        step = _STEP.match(rest)
        if step is None:
            raise SystemExit(f"jsonfilter stand-in: unsupported pattern {path!r}")
        rest = rest[step.end():]
        name, dq, sq, index = step.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
            continue
        key = name if name is not None else (dq if dq is not None else sq)
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def type_name(value: Any) -> str:
    """json-c's type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def export(value: Any) -> str:
    """The right-hand side jsonfilter prints after ``export VAR=``."""
    if isinstance(value, dict):
        return "\\ ".join(quote(key) for key in value)
    if isinstance(value, list):
        return "\\ ".join(str(index) for index in range(len(value)))
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:f}"
    if isinstance(value, str):
        return quote(value)
    return ""


def plain(value: Any) -> str:
    """What jsonfilter prints for a match without a VAR= prefix."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list)) \
        else json.dumps(value)


def main(argv: list[str]) -> int:
    """Parse options in order, as getopt does, and print each expression's result."""
    source: str | None = None
    document: Any = _MISSING
    status = 0
    args = list(argv)
    while args:
        option = args.pop(0)
        if option == "-q":
            sys.stderr = open("/dev/null", "w")  # noqa: SIM115 - as jsonfilter closes stderr
            continue
        if option not in ("-s", "-i", "-e", "-t") or not args:
            print(f"jsonfilter stand-in: unsupported arguments {argv!r}", file=sys.stderr)
            return 2
        operand = args.pop(0)
        if option == "-s":
            source = operand
            continue
        if option == "-i":
            with open(operand, encoding="utf-8", errors="surrogateescape") as handle:
                source = handle.read()
            continue
        if document is _MISSING:
            try:
                document, _ = json.JSONDecoder().raw_decode((source if source is not None
                                                            else sys.stdin.read()).lstrip())
            except (ValueError, UnicodeDecodeError) as error:
                print(f"Failed to parse json data: {error}", file=sys.stderr)
                return 126
        labelled = re.match(r"^([A-Za-z_]\w*)=(.*)$", operand, re.S)
        prefix, pattern = labelled.groups() if labelled else ("", operand)
        value = walk(document, pattern)
        if value is _MISSING:
            status = 1
            continue
        if option == "-t":
            sys.stdout.write(f"export {prefix}={type_name(value)}; " if prefix
                             else f"{type_name(value)}\n")
        elif prefix:
            sys.stdout.write(f"export {prefix}={export(value)}; ")
        elif value is not None:
            sys.stdout.write(plain(value) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
