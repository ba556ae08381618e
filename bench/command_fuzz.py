#!/usr/bin/env python
"""Hostile input through the AP command verifier and the command log's reader: 100,000 each.

Hypothesis generates the inputs (generation only: no shrinking, no example database) from the
strategies the brief test uses (tests/common.py, ``command_payloads`` and ``ack_payloads``):
a signed command or an answer with up to three fields left out, replaced by any JSON value or
by a near miss (a trailing newline, full-width or Cyrillic look-alikes, one character changed,
a number as text, off by one or by 2**32), any JSON, any bytes, the good payload cut short,
arrays nested up to 20,000 deep, integers of 4,000-6,000 digits.

- ``command``: ``census.commands.verify_command`` under the AP's key, as an agent checks a
  command (``tests.common.check_command``): only its CommandError may come out, and only the
  signed command itself, field for field with its JSON types, may be accepted;
- ``log``: ``apcommands.log.TopicReader.read`` on an AP's answer and command topics, as the
  command log reads them (``tests.common.check_ack``): only CommandError, and an accepted
  answer within the contract.

Printed per target: inputs, accepted, refusals by reason, contract breaks (must be 0, the
first few with their input) and inputs/s. Exit status 1 when any contract broke.

    .venv/bin/python bench/command_fuzz.py                 # 100,000 of each (issue #11)
    .venv/bin/python bench/command_fuzz.py --inputs 2000 --seed 3 --targets log
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.common import (  # noqa: E402
    FUZZ_COMMAND_AP,
    ack_payloads,
    check_ack,
    check_command,
    command_payloads,
)

TOPICS = (f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd/ack", f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd")
TARGETS = ("command", "log")


def run_target(target: str, inputs: int, run_seed: int, progress_every: int,
               ) -> tuple[collections.Counter[str], list[str], float]:
    """Generate ``inputs`` payloads for one target; count verdicts and contract breaks."""
    verdicts: collections.Counter[str] = collections.Counter()
    breaks: list[str] = []
    started = time.perf_counter()

    def record(check: Callable[[], str], shown: bytes) -> None:
        """One input's verdict, or a contract break with its input and traceback."""
        try:
            verdicts[check()] += 1
        except Exception:  # noqa: BLE001  (counting every way it can break is the point)
            verdicts["BROKE"] += 1
            if len(breaks) < 5:
                breaks.append(f"{shown[:200]!r}\n{traceback.format_exc(limit=3)}")
        done = sum(verdicts.values())
        if done % progress_every == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {target}: {done:,} of {inputs:,}, {rate:,.0f} inputs/s, "
                  f"about {(inputs - done) / rate / 60:.1f} min left", flush=True)

    options = settings(max_examples=inputs, deadline=None, database=None,
                       phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    if target == "command":
        @options
        @given(command_payloads())
        def one(payload: bytes) -> None:
            record(lambda: check_command(payload), payload)
    else:
        @options
        @given(ack_payloads(), st.sampled_from(TOPICS))
        def one(payload: bytes, topic: str) -> None:  # type: ignore[misc]
            record(lambda: check_ack(topic, payload), payload)
    seed(run_seed)(one)()
    return verdicts, breaks, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the targets asked for and print what each answered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    broke = 0
    for target in targets:
        verdicts, breaks, seconds = run_target(target, args.inputs, args.seed,
                                               max(1000, args.inputs // 10))
        total = sum(verdicts.values())
        refusals = ", ".join(f"{word} {n:,}" for word, n in verdicts.most_common()
                             if word not in ("ok", "BROKE"))
        print(f"{target}: {total:,} inputs in {seconds:.0f} s ({total / seconds:,.0f}/s): "
              f"accepted {verdicts['ok']:,}, contract broken {verdicts['BROKE']:,}; "
              f"refused: {refusals}")
        for shown in breaks:
            print("  BROKE:", shown)
        broke += verdicts["BROKE"]
    return 1 if broke else 0


if __name__ == "__main__":
    raise SystemExit(main())
