"""Fuzz the collector's parser with a million hostile messages: nothing raises, no good event lost.

One command:

    .venv/bin/python bench/parser_fuzz.py                       # 1,000,000 messages
    .venv/bin/python bench/parser_fuzz.py --messages 50000 --seed 7 --chunk 10000
    .venv/bin/python bench/parser_fuzz.py --only 3               # chunk 4 of 20 alone

The run goes in chunks (default 50,000 messages, about two minutes here): a progress
line after each, with the time left, and the finished chunks in a state file
(``bench/out/parser_fuzz_<seed>_<messages>.json``), so an interrupted million resumes where it
stopped (``--fresh`` starts over). Each chunk's generator is seeded from the seed and the
chunk's number: chunk K gives the same messages alone (``--only K``) as in a whole run.

Each message is generated from a seeded random source (a run is reproducible from its seed):
batches of good events with hostile events placed among them (any JSON value, a good event with
one field made hostile: numbers of 400 or 5,000 digits, NaN, Infinity, nesting up to 100,000
levels, lone surrogates, control characters, brackets inside strings), whole messages nested
too deep, random bytes, good messages cut or with bytes flipped, unknown APs and bad topics;
three in ten batches in an end-to-end acknowledgement envelope (whose id must be read back,
or the AP would re-send it for ever) and now and then a hostile envelope.
Every message goes through what the collector does with it: ``EventParser.parse``, the line
protocol of the accepted events, and the dead-letter sample of every reject. Printed: how many
messages raised (must be 0), good events placed among hostile ones and how many were accepted
(must be all), rejects by reason, and the rate. Exit status 1 when either must fails.

Tests/collector/test_parser.py runs the same idea through Hypothesis for a few seconds; this is
the long run, with a plain seeded generator because Hypothesis spends about a millisecond per
example on its own bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from census.events import MAX_PAYLOAD_BYTES  # noqa: E402
from collector.parser import (  # noqa: E402
    ApLocation,
    EventParser,
    Pseudonymizer,
    dead_letter_payload,
)
from timeseries.presence import LineBuilder  # noqa: E402

NOW = 1_764_000_000.0
AP = "ap-1"
TOPIC = f"site/v1/ap/{AP}/events"
KEY = "fuzz-key-" + "k" * 32
LOCATION = ApLocation(AP, "C1", "B1", "3", "C1/B1/301")
TYPES = ("connect", "disconnect", "snapshot", "probe")
# Values no field of an event accepts, as JSON text (hostile to the decoders, not only wrong).
HOSTILE_NUMBERS = (b"1" + b"0" * 400, b"-1" + b"0" * 400, b"9" * 5000, b"NaN", b"Infinity",
                   b"-Infinity", b"1e999", b"-1e999", b"1" + b"0" * 30, b"-" + b"1" * 25)
HUGE = 100_000  # digits or levels; rare, as each such value costs the parser milliseconds
HOSTILE_TEXT = ('"\\ud800"', '"\\udfff\\ud800"', '"\\u0000\\n\\r\\t"', '"' + "[" * 40 + '"',
                '"' + "网" * 40 + '"', '"\\"\\\\"', '"' + "\U0001f600" * 9 + '"')
UNICODE = "aé网\U0001f600\u200b\x7f\\\"[]{}, \n"


def good_event(rng: random.Random, index: int) -> tuple[str, str]:
    """A valid event as JSON text, and its MAC (unique within the message)."""
    kind = rng.choice(TYPES)
    mac = f"{rng.choice((0x00, 0x02)):02x}:16:3e:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}:" \
          f"{rng.randrange(256):02x}"
    event: dict[str, object] = {"v": 1, "type": kind, "mac": mac,
                                "ts": rng.choice((NOW - rng.uniform(0, 86400 * 80), int(NOW)))}
    if kind in ("snapshot", "probe") or rng.random() < 0.5:
        event["rssi"] = rng.randint(-120, 0)
    if rng.random() < 0.5:
        event["ssid"] = "".join(rng.choice(UNICODE) for _ in range(rng.randint(0, 8)))
    if rng.random() < 0.2:
        event["ap"] = AP
    if rng.random() < 0.1:
        event["band"] = rng.choice(("5g", 2, None, [1, {"x": []}]))
    return json.dumps(event, ensure_ascii=rng.random() < 0.5), mac


def deep(rng: random.Random) -> int:
    """A nesting depth past the limit: mostly just past it, now and then 100,000 levels."""
    return HUGE if rng.random() < 0.002 else rng.choice((33, 34, 40, 200, 1000, 3000))


def hostile_number(rng: random.Random) -> str:
    """A number no field accepts: hundreds or thousands of digits, NaN, infinities."""
    return "-" + "9" * HUGE if rng.random() < 0.002 else rng.choice(HOSTILE_NUMBERS).decode()


def nested(rng: random.Random, depth: int) -> str:
    """A value nested depth levels deep, arrays or objects."""
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


def any_json(rng: random.Random, depth: int = 0) -> str:
    """Some JSON value that is not an event object (scalars, arrays, objects without v)."""
    choice = rng.randrange(7 if depth < 3 else 4)
    if choice == 0:
        return rng.choice(("null", "true", "false", "0", "-0.0", "1e-400"))
    if choice == 1:
        return hostile_number(rng)
    if choice == 2:
        return rng.choice(HOSTILE_TEXT)
    if choice == 3:
        return json.dumps("".join(rng.choice(UNICODE) for _ in range(rng.randint(0, 20))))
    if choice == 4:
        return "[" + ",".join(any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if choice == 5:
        return "{" + ",".join(f'"k{i}":{any_json(rng, depth + 1)}'
                              for i in range(rng.randint(0, 4))) + "}"
    return nested(rng, deep(rng))


def hostile_field(rng: random.Random, name: str) -> str:
    """A value for one field that makes the event invalid, as JSON text."""
    if name == "ssid":
        return rng.choice((json.dumps("x" * 33), json.dumps("网" * 11), '"\\ud800"', "7",
                           nested(rng, rng.randint(1, 3000)), hostile_number(rng)))
    if name == "rssi":
        return rng.choice(("1", "-121", "-40.0", "true", '"x"', nested(rng, rng.randint(1, 50)),
                           hostile_number(rng)))
    if name == "ap":
        return rng.choice(('"ap-2"', '""', "1", nested(rng, rng.randint(1, 3000))))
    if rng.random() < 0.5:
        return hostile_number(rng)
    if rng.random() < 0.3:
        return nested(rng, rng.choice((1, 2, deep(rng))))
    return rng.choice(('"\\ud800"', "null", "true", '"' + "[" * 40 + '"', "[]", "{}"))


def hostile_event(rng: random.Random) -> str:
    """An event that must be refused, as JSON text."""
    choice = rng.randrange(4)
    if choice == 0:
        return any_json(rng)
    if choice == 1:
        return nested(rng, deep(rng))
    text, _mac = good_event(rng, 0xFFFF)
    fields = json.loads(text)
    fields["type"] = "snapshot"
    fields.setdefault("rssi", -50)
    name = rng.choice(("v", "type", "mac", "ts", "rssi", "ssid", "ap"))
    parts = [f'"{key}":{json.dumps(value)}' for key, value in fields.items() if key != name]
    parts.insert(rng.randint(0, len(parts)), f'"{name}":{hostile_field(rng, name)}')
    if choice == 3 and rng.random() < 0.5:
        parts.append(f'"x":{nested(rng, rng.randint(33, 3000))}')  # and an unknown field
    return "{" + ",".join(parts) + "}"


MESSAGE_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def enveloped(rng: random.Random, batch: bytes) -> tuple[bytes, str]:
    """A batch in an end-to-end acknowledgement envelope (docs/contracts.md, 2a), and its id."""
    message_id = "".join(rng.choice(MESSAGE_ID_CHARS) for _ in range(rng.randint(1, 64)))
    fields = [b'"v":1', b'"id":' + json.dumps(message_id).encode(), b'"events":' + batch]
    rng.shuffle(fields)
    return b"{" + b",".join(fields) + b"}", message_id


def hostile_envelope(rng: random.Random) -> bytes:
    """An envelope no collector may store from: a bad version, id or events value."""
    fields = {"v": "1", "id": json.dumps("boot-1"), "events": "[]"}
    name = rng.choice(tuple(fields))
    fields[name] = rng.choice((hostile_number(rng), nested(rng, deep(rng)), '"\\ud800"', "null",
                               json.dumps("a/b"), json.dumps("x" * 65), '"2"', "{}"))
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode(
        "utf-8", "surrogatepass")


def message(rng: random.Random) -> tuple[str, bytes, int, list[str], str | None]:
    """A topic, a payload, how many events it holds (-1: unknown), the good MACs placed, and
    the envelope id the collector must read back to confirm (None: none expected)."""
    topic, body, held, good_macs = bare_message(rng)
    if topic == TOPIC and held >= 0 and len(body) < MAX_PAYLOAD_BYTES - 200 \
            and rng.random() < 0.3:
        body, message_id = enveloped(rng, body)
        return topic, body, held, good_macs, message_id
    if rng.random() < 0.02:
        return TOPIC, hostile_envelope(rng), -1, [], None
    return topic, body, held, good_macs, None


def bare_message(rng: random.Random) -> tuple[str, bytes, int, list[str]]:
    """A topic, a payload, how many events it holds (-1: unknown) and the good MACs placed."""
    choice = rng.random()
    if choice < 0.70:  # good events with hostile ones among them: the case that matters
        goods = [good_event(rng, index) for index in range(rng.randint(0, 20))]
        items = [text for text, _mac in goods]
        for _ in range(rng.randint(1, 3)):
            items.insert(rng.randint(0, len(items)), hostile_event(rng))
        spacing = rng.choice(("", " ", "\n\t"))
        body = ("[" + spacing + ("," + spacing).join(items) + spacing + "]").encode(
            "utf-8", "surrogatepass")
        if len(body) > MAX_PAYLOAD_BYTES:  # refused whole, rightly: counted as one message
            return TOPIC, body, 1, []
        return TOPIC, body, len(items), [mac for _text, mac in goods]
    if choice < 0.78:
        return TOPIC, rng.randbytes(rng.randint(0, 300)), -1, []
    if choice < 0.86:  # a good batch, then cut or with bytes flipped
        body = bytearray(("[" + ",".join(good_event(rng, i)[0] for i in range(5)) + "]").encode())
        if rng.random() < 0.5:
            del body[rng.randrange(len(body)):]
        for _ in range(rng.randint(1, 4)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        return TOPIC, bytes(body), -1, []
    if choice < 0.92:  # one event (or one value) as the whole message
        return TOPIC, rng.choice((hostile_event(rng), nested(rng, deep(rng)),
                                  "[" * deep(rng))).encode("utf-8", "surrogatepass"), -1, []
    if choice < 0.96:  # a good message on a topic the collector does not store
        topic = rng.choice(("site/v1/ap/ap-9/events", "site/v1/ap/bad ap/events", "other"))
        return topic, ("[" + good_event(rng, 1)[0] + "]").encode(), -1, []
    goods = [good_event(rng, index) for index in range(rng.randint(1, 30))]  # all good
    body = ("[" + ",".join(text for text, _mac in goods) + "]").encode()
    return TOPIC, body, len(goods), [mac for _text, mac in goods]


@dataclass
class Tally:
    """What a chunk (or the whole run) counted; adds up across chunks."""

    messages: int = 0
    payload_bytes: int = 0
    good_placed: int = 0
    good_accepted: int = 0
    good_lost: int = 0
    accepted: int = 0
    seconds: float = 0.0
    unhandled: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    first_failure: str = ""

    def add(self, other: Tally) -> None:
        """Fold another tally into this one."""
        for name in ("messages", "payload_bytes", "good_placed", "good_accepted", "good_lost",
                     "accepted", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unhandled.update(other.unhandled)
        self.reasons.update(other.reasons)
        self.first_failure = self.first_failure or other.first_failure

    def to_json(self) -> dict[str, Any]:
        """The tally as JSON values (the state file keeps one per finished chunk)."""
        data = asdict(self)
        data["unhandled"], data["reasons"] = dict(self.unhandled), dict(self.reasons)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        """A tally read back from the state file."""
        return cls(**{**data, "unhandled": Counter(data["unhandled"]),
                      "reasons": Counter(data["reasons"])})


def run_chunk(seed: int, index: int, size: int) -> Tally:
    """Generate and parse one chunk of messages; its generator is seeded from (seed, index), so
    a chunk gives the same messages whether run alone, resumed or in a full run."""
    rng = random.Random(f"{seed}:{index}")
    pseudonymizer = Pseudonymizer(KEY)
    parser = EventParser("site", pseudonymizer, {AP: LOCATION}.get, retention_days=90)
    lines = LineBuilder()
    tally = Tally(messages=size)
    started = time.perf_counter()
    for _ in range(size):
        topic, body, held, good_macs, message_id = message(rng)
        tally.payload_bytes += len(body)
        try:
            parsed = parser.parse(topic, body, NOW)
            if parsed.location is not None:
                lines.lines(parsed.location, parsed.events)
            for reject in parsed.rejects:
                tally.reasons[reject.reason] += reject.count
                dead_letter_payload(pseudonymizer, reject.sample)
        except Exception as error:  # what the bench exists to count
            tally.unhandled[type(error).__name__] += 1
            tally.first_failure = (tally.first_failure
                                   or f"{body[:200]!r}\n{traceback.format_exc()}")
            continue
        tally.accepted += len(parsed.events)
        if message_id is not None and parsed.message_id != message_id:
            tally.unhandled["envelope_id_lost"] += 1  # never confirmed: re-sent for ever
        if held >= 0 and parsed.total != held:
            tally.unhandled["miscounted"] += 1
        if good_macs:
            tally.good_placed += len(good_macs)
            kept = Counter(event.device for event in parsed.events)
            for mac in good_macs:
                device = pseudonymizer.lookup(mac)
                if device is not None and kept[device[0]] > 0:
                    kept[device[0]] -= 1
                    tally.good_accepted += 1
                else:
                    tally.good_lost += 1
    tally.seconds = time.perf_counter() - started
    return tally


def load_state(path: Path, seed: int, messages: int, chunk: int) -> dict[int, Tally]:
    """Finished chunks of an earlier run with the same seed, size and chunking (else none)."""
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if (state.get("seed"), state.get("messages"), state.get("chunk")) != (seed, messages, chunk):
        return {}
    return {int(index): Tally.from_json(data) for index, data in state["done"].items()}


def save_state(path: Path, seed: int, messages: int, chunk: int, done: dict[int, Tally]) -> None:
    """Write the finished chunks (to a temporary file first: a kill leaves the old state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"seed": seed, "messages": messages, "chunk": chunk,
                                     "done": {str(i): t.to_json() for i, t in done.items()}}))
    temporary.replace(path)


def main() -> int:
    """Run the fuzz chunk by chunk with progress; print the counts; non-zero exit when
    something raised or was lost."""
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--messages", type=int, default=1_000_000)
    arguments.add_argument("--seed", type=int, default=12)
    arguments.add_argument("--chunk", type=int, default=50_000,
                           help="messages per chunk: progress and the state file per chunk")
    arguments.add_argument("--state", type=Path, default=None,
                           help="resume file (default bench/out/parser_fuzz_<seed>_<messages>"
                                ".json); finished chunks are skipped on the next run")
    arguments.add_argument("--fresh", action="store_true", help="ignore an earlier state file")
    arguments.add_argument("--only", type=int, default=None, metavar="K",
                           help="run chunk K alone (0-based), e.g. on another machine")
    options = arguments.parse_args()
    if options.messages < 1 or options.chunk < 1:
        arguments.error("--messages and --chunk must be at least 1")

    chunks = [(index, min(options.chunk, options.messages - start))
              for index, start in enumerate(range(0, options.messages, options.chunk))]
    if options.only is not None:
        if not 0 <= options.only < len(chunks):
            arguments.error(f"--only must be 0-{len(chunks) - 1}")
        chunks = [chunks[options.only]]
    state = options.state or ROOT / "bench" / "out" / (
        f"parser_fuzz_{options.seed}_{options.messages}.json")
    done = {} if options.fresh else load_state(state, options.seed, options.messages,
                                               options.chunk)
    todo = [(index, size) for index, size in chunks if index not in done]
    if len(todo) < len(chunks):
        print(f"resuming from {state}: {len(chunks) - len(todo)} of {len(chunks)} chunks done",
              flush=True)
    started = time.perf_counter()
    generated = 0
    for number, (index, size) in enumerate(todo, start=1):
        tally = run_chunk(options.seed, index, size)
        done[index] = tally
        if options.only is None:
            save_state(state, options.seed, options.messages, options.chunk, done)
        generated += size
        elapsed = time.perf_counter() - started
        left = sum(s for _i, s in todo[number:])
        print(f"chunk {index + 1}/{len(chunks)}: {size:,} messages in {tally.seconds:.1f} s, "
              f"unhandled {sum(tally.unhandled.values())}, good lost {tally.good_lost}; "
              f"{sum(t.messages for t in done.values()):,} of {options.messages:,} done, "
              f"about {left * elapsed / generated / 60:.1f} min left", flush=True)

    total = Tally()
    for index, _size in chunks:
        total.add(done[index])
    print(f"messages            {total.messages:,} ({total.payload_bytes / 1e6:,.1f} MB), "
          f"seed {options.seed}, {len(chunks)} chunk(s) of up to {options.chunk:,}")
    print(f"unhandled           {sum(total.unhandled.values())} {dict(total.unhandled) or ''}")
    print(f"good events placed  {total.good_placed:,} (among hostile ones, or whole good batches)")
    print(f"good events stored  {total.good_accepted:,} (lost: {total.good_lost})")
    print(f"events accepted     {total.accepted:,}")
    print(f"rejected by reason  {dict(sorted(total.reasons.items()))}")
    print(f"time                {total.seconds:.1f} s of parsing, "
          f"{total.messages / max(total.seconds, 1e-9):,.0f} messages/s")
    if total.first_failure:
        print("first failure:\n" + total.first_failure)
    return 1 if total.unhandled or total.good_lost else 0


if __name__ == "__main__":
    sys.exit(main())
