"""Stand-in for OpenWrt's ``ubus`` command line, serving recorded hostapd objects from a folder.

The folder (``UBUS_STANDIN_DIR``) plays ubusd and hostapd:

* ``objects``: one ``name id`` line per object on the bus (ids are hex, as ``ubus -v list``
  prints them); the test rewrites it to make an interface go away or come back with a new id;
* ``<name>.get_clients.json``, ``<name>.get_status.json``: what ``ubus call`` answers;
* ``<name>.notify``: hostapd's notifications, one ``{ "<type>": {...} }`` line each, appended
  by the test while the publisher runs; ``ubus subscribe`` prints those appended after it
  subscribed, and stops receiving (but keeps running, as the real one does) once the object's
  id changes: a subscription belongs to the object instance it was made on;
* ``subscriptions.log``: ``name id`` appended when a subscription starts, for the test to wait on.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["UBUS_STANDIN_DIR"])


def objects() -> dict[str, str]:
    """Objects now on the bus: name -> id."""
    table: dict[str, str] = {}
    path = STATE / "objects"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                name, object_id = line.split()
                table[name] = object_id
    return table


def matching(pattern: str) -> list[str]:
    """ubusd's lookup: an exact name, or a prefix ending in '*'."""
    names = sorted(objects())
    if pattern.endswith("*"):
        return [name for name in names if name.startswith(pattern[:-1])]
    return [name for name in names if name == pattern]


def cmd_list(args: list[str], verbose: bool) -> int:
    """ubus [-v] list [pattern]."""
    table = objects()
    for name in matching(args[0] if args else "*"):
        if verbose:
            print(f"'{name}' @{table[name]}")
            print('\t"get_clients":{}')
            print('\t"get_status":{}')
        else:
            print(name)
    return 0


def cmd_call(args: list[str]) -> int:
    """ubus call OBJECT METHOD: the recorded answer, indented as ubus prints it."""
    name, method = args[0], args[1]
    answer = STATE / f"{name}.{method}.json"
    if name not in objects():
        print("Command failed: Not found", file=sys.stderr)
        return 4
    if not answer.exists():
        print("Command failed: Method not found", file=sys.stderr)
        return 3
    print(json.dumps(json.loads(answer.read_text()), indent="\t"))
    return 0


def cmd_subscribe(args: list[str]) -> int:
    """ubus subscribe OBJECT: print notifications from now on, one line each."""
    name = args[0]
    object_id = objects().get(name)
    if object_id is None:
        print(f"Error while registering for event '{name}': Not found", file=sys.stderr)
        return 255
    feed = STATE / f"{name}.notify"
    feed.touch()
    position = feed.stat().st_size
    with open(STATE / "subscriptions.log", "a") as log:
        log.write(f"{name} {object_id}\n")
    while True:
        if objects().get(name) != object_id:
            time.sleep(0.1)  # the object is gone or re-added: this subscription is dead
            continue
        with open(feed, "rb") as handle:
            handle.seek(position)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if complete:
            position += len(complete)
            sys.stdout.buffer.write(complete)
            sys.stdout.flush()
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    """Dispatch like ubus's cli.c (options before the command)."""
    verbose = False
    while argv and argv[0].startswith("-"):
        option = argv.pop(0)
        if option == "-v":
            verbose = True
        elif option in ("-t", "-s"):
            argv.pop(0)
    if not argv:
        return 1
    command, rest = argv[0], argv[1:]
    if command == "list":
        return cmd_list(rest, verbose)
    if command == "call":
        return cmd_call(rest)
    if command == "subscribe":
        return cmd_subscribe(rest)
    print(f"ubus stand-in: unsupported command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
