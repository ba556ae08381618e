"""Stand-in for openNDS's ``ndsctl``: records each call and answers as ``src/ndsctl.c`` does.

``NDSCTL_STANDIN_DIR/calls`` gets one line per call (the arguments, space separated).
``NDSCTL_STANDIN_DIR/exit_codes``, when present, lists the exit codes of the next calls, one
per call (4: "ndsctl thread is busy", 3: openNDS not running, 1: openNDS said No); after
the list, or without it, every call succeeds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MESSAGES = {
    ("auth", 0): "Client %s authenticated.",
    ("auth", 1): "Failed to authenticate client %s.",
    ("deauth", 0): "Client %s deauthenticated.",
    ("deauth", 1): "Client %s not found.",
}


def main(argv: list[str]) -> int:
    """Record, then exit with the next scripted code."""
    state = Path(os.environ["NDSCTL_STANDIN_DIR"])
    with open(state / "calls", "a") as calls:
        calls.write(" ".join(argv) + "\n")
    code = 0
    script = state / "exit_codes"
    if script.exists():
        codes = script.read_text().split()
        if codes:
            code = int(codes[0])
            script.write_text(" ".join(codes[1:]))
    if code == 4:
        print("ndsctl thread is busy, please try later.")
    elif code == 3:
        print("ndsctl: opennds probably not yet started (Error: No such file or directory)",
              file=sys.stderr)
    elif argv and (argv[0], code) in MESSAGES:
        print(MESSAGES[(argv[0], code)] % (argv[1] if len(argv) > 1 else ""))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
