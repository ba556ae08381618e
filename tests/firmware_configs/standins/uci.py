"""Stand-in for OpenWrt's ``uci``, for the options the census files change (get, add_list,
del_list, commit), over a JSON file ``UCI_STANDIN_DIR/config.json``:
``{"dhcp": {"lan": {".type": "dhcp", "dhcp_option_force": ["114,http://..."]}}}``.
``uci get`` prints a list's values space separated, as uci does; commits are logged to
``UCI_STANDIN_DIR/commits``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE = Path(os.environ["UCI_STANDIN_DIR"])


def load() -> dict[str, Any]:
    """The configuration."""
    loaded: dict[str, Any] = json.loads((STATE / "config.json").read_text())
    return loaded


def main(argv: list[str]) -> int:
    """uci [-q] get|add_list|del_list|commit ..."""
    quiet = bool(argv) and argv[0] == "-q"
    args = argv[1:] if quiet else argv
    if len(args) != 2:
        print(f"uci stand-in: unsupported {argv!r}", file=sys.stderr)
        return 2
    verb, operand = args
    config = load()
    if verb == "commit":
        with open(STATE / "commits", "a") as log:
            log.write(operand + "\n")
        return 0
    path, _, value = operand.partition("=")
    parts = path.split(".")
    section = config.get(parts[0], {}).get(parts[1]) if len(parts) > 1 else None
    if verb == "get":
        if section is None or (len(parts) == 3 and parts[2] not in section):
            if not quiet:
                print("uci: Entry not found", file=sys.stderr)
            return 1
        found = section[".type"] if len(parts) == 2 else section[parts[2]]
        print(" ".join(found) if isinstance(found, list) else found)
        return 0
    if section is None or len(parts) != 3 or verb not in ("add_list", "del_list"):
        print(f"uci stand-in: unsupported {argv!r}", file=sys.stderr)
        return 2
    values = section.setdefault(parts[2], [])
    if verb == "add_list":
        values.append(value)
    else:
        section[parts[2]] = [item for item in values if item != value]
    (STATE / "config.json").write_text(json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
