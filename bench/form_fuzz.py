#!/usr/bin/env python
"""Hostile input through every resident form and verifier, against the real registry database.

Hypothesis generates the inputs (generation only: no shrinking, no example database), and each
one goes through the Flask test client of a portal built on an isolated registry (its own
PostgreSQL database, or SQLite with ``--database sqlite``), Redis key prefix and topic prefix:

- ``redirect``: the AP's signed redirect (``GET /``), fields replaced, signed with the AP's
  secret or not;
- ``fas``: an openNDS hand-over (``GET /?fas=…`` or its plain parameters);
- ``signin``: the first page (mobile number, consent, and the flow and CSRF tokens), each field
  valid or hostile;
- ``verify``: the code form (the code and the tokens) for a flow waiting for its code;
- ``identity``: the identity page (name, document type and number, unit choice, the tokens) of
  a flow whose number is proven (a fresh one after each accepted sign-in);
- ``resend``, ``one_tap``: the flow and CSRF token verifiers behind those buttons;
- ``resume``: a flow's form again (``GET /s``), any token and query;
- ``lang``, ``draft``: the form posted to the language switch (any target language) and as a
  draft kept for a refresh;
- ``change``, ``again``: the code page's "change number" and the expired page's "start again".

The rate limits are raised out of the way (they would refuse almost everything after a few
hundred inputs; their own tests are in tests/portal). Each input is counted as accepted (the
next step's page), rejected (a page saying what is wrong, 4xx included) or 5xx/unhandled,
which must stay 0; the first few of those are printed with their input.

    .venv/bin/python bench/form_fuzz.py --inputs 100000 --jobs 2  # the issue's run
    .venv/bin/python bench/form_fuzz.py --inputs 800 --database sqlite

The run is cut into units of one target and ``--chunk`` inputs (default 2,000, about half a
minute of one core). ``--jobs N`` runs units in N worker processes, each with its own portal
app on the same registry. After each unit its counts go into a state file
(``bench/out/form_fuzz_<seed>_<inputs>_<chunk>.json``): an interrupted run started again with
the same numbers skips the finished units (``--fresh`` starts over). A unit's inputs come from
a Hypothesis seed made of the run's seed, the target and the unit's number, so the units of one
target differ from each other and a unit gives the same inputs when run again.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from portal_load import AP_ID, AP_SECRET, bench_settings, populate  # noqa: E402  (bench/ is the script's folder)

from census.handshake import REDIRECT_FIELDS, redirect_signature, sign_redirect  # noqa: E402
from census.settings import Settings  # noqa: E402
from portal import create_app  # noqa: E402
from wifi_census import local_servers as local_services  # noqa: E402

UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
      "(KHTML, like Gecko) Mobile/15E148")
# Values that have broken form handlers elsewhere: injections, invisible and confusable
# characters, other scripts' digits, numbers in every wrong shape, sizes past every limit.
NASTY = (
    "", " ", "\x00", "\u3164", "\u200b张三", "\u202e三张", "Robert'); DROP TABLE residents;--",
    "{{7*7}}", "<script>alert(1)</script>", "%s%s%n", "../../etc/passwd", "null", "None",
    "１３８００１３８０００", "١٣٨٠٠١٣٨٠٠٠", "+0086 138 0013 8000", "+860013800138000",
    "008613800138000", "+8613800138000", "13800138000", "+1 202 555 0100", "1" * 400,
    "9" * 5000, "X" * 70_000, "110101199003077777", "11010119900307777X", "11010119900307777x",
    "-1", "0", "99999999999999999999999999", "1e309", "nan", "ａｂｃ", "Ⅻ", "𝟏𝟐𝟑", "\r\n\t",
)
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=120)
HOSTILE = st.one_of(
    _TEXT, st.sampled_from(NASTY), st.from_regex(r"\A\+?[0-9 \-]{0,20}\Z"),
    st.from_regex(r"\A[0-9]{17}[0-9Xx]\Z"), st.integers().map(str),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)
NO_CONTENT = ""  # accepted means 204 (a draft kept)
DONE = '<div class="ok"'  # the connected page
CURRENT = "\x00current"  # replaced by the current page's token when the input is sent
# The flow and CSRF fields of whichever page is current when an input is sent.
CURRENT_TOKENS = {"flow": st.just(CURRENT), "csrf_token": st.just(CURRENT),
                  "lang": st.sampled_from(("zh_CN", "en"))}
ID_TYPES = ("resident_id_card", "passport", "hk_macao_permit", "taiwan_permit",
            "foreign_permanent_id", "other")


def _form(valid: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """A form with valid values except for up to three fields, made hostile or left out (so
    that inputs reach every check, not only the first field's)."""
    bad = {name: st.one_of(HOSTILE, st.none()) for name in valid}

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, str]:
        spoilt = draw(st.sets(st.sampled_from(sorted(valid)), max_size=3))
        values = {name: draw(bad[name] if name in spoilt else valid[name]) for name in valid}
        return {name: value for name, value in values.items() if value is not None}

    return build()


def _hidden(html: str, name: str) -> str:
    """A hidden input's value in a page ('' when absent)."""
    marker = f'name="{name}" type="hidden" value="'
    start = html.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return html[start:html.index('"', start)].replace("&amp;", "&")


class Run:
    """The portal under test, one flow per page it needs, and the counts."""

    def __init__(self, settings_: Settings, worker: int = 0) -> None:
        limits = {name: (10**9, 60) for name in ("page", "signin", "verify")}
        self.app = create_app(settings_, {"TESTING": True, "PORTAL_RATE_LIMITS": limits})
        self.client = self.app.test_client()
        self.client.environ_base.update({"HTTP_USER_AGENT": UA,
                                         "HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"})
        self.counts: dict[str, collections.Counter[str]] = {}
        self.failures: list[str] = []
        self.seconds: dict[str, float] = {}
        # Workers share the registry: each numbers its devices and phones in its own range.
        self._n = worker * 10_000_000

    def splash(self) -> str:
        """A fresh flow's identity form."""
        self._n += 1
        mac = f"02:00:{self._n >> 24 & 255:02x}:{self._n >> 16 & 255:02x}:" \
              f"{self._n >> 8 & 255:02x}:{self._n & 255:02x}"
        query = urlencode(sign_redirect(AP_SECRET, AP_ID, mac, "10.9.0.2", "10.9.0.1:2050",
                                        "http://example.com/"))
        return self.client.get(f"/?{query}").get_data(as_text=True)

    def code_page(self) -> str:
        """A flow waiting for its code (a valid number was sent)."""
        splash = self.splash()
        self._n += 1
        page = self.client.post("/signin", data={
            "flow": _hidden(splash, "flow"), "csrf_token": _hidden(splash, "csrf_token"),
            "lang": "zh_CN", "phone": f"137{self._n:08d}", "consent": "y",
        }).get_data(as_text=True)
        return _reached(page, 'name="code"', "the code page")

    def identity_page(self) -> str:
        """A flow whose number is proven (its code was entered): the identity page."""
        page = self.code_page()
        code = self.app.extensions["portal"].sms.last_code(f"137{self._n:08d}")
        page = self.client.post("/verify", data={
            "flow": _hidden(page, "flow"), "csrf_token": _hidden(page, "csrf_token"),
            "lang": "zh_CN", "code": code,
        }).get_data(as_text=True)
        return _reached(page, 'name="id_number"', "the identity page")

    def send_on(self, current: dict[str, str], target: str, accepted: str, path: str,
                data: dict[str, str], renew: Callable[[], str] | None) -> None:
        """POST data with its CURRENT values taken from current["page"]; after an accepted
        input, current["page"] becomes renew()'s page (a flow that has left the step)."""
        posted = {k: _hidden(current["page"], k) if v == CURRENT else v for k, v in data.items()}
        before = self.counts.get(target, collections.Counter())["accepted"]
        self.send(target, accepted, "POST", path, posted)
        if renew is not None and self.counts[target]["accepted"] > before:
            current["page"] = renew()

    def record(self, target: str, outcome: str, detail: Callable[[], str]) -> None:
        """Count one input's outcome; keep the first few failures' inputs."""
        self.counts.setdefault(target, collections.Counter())[outcome] += 1
        if outcome == "5xx" and len(self.failures) < 10:
            self.failures.append(f"{target}: {detail()}")

    def send(self, target: str, accepted: str, method: str, path: str,
             data: dict[str, Any] | None = None) -> None:
        """One request; accepted when the page carries the marker of the next step."""
        try:
            response = (self.client.get(path) if method == "GET"
                        else self.client.post(path, data=data))
        except Exception:  # noqa: BLE001  (an unhandled exception is what is being counted)
            self.record(target, "5xx", lambda: f"{path} {data!r}\n{traceback.format_exc()}")
            return
        status = response.status_code
        if status >= 500:
            self.record(target, "5xx", lambda: f"{status} {path} {data!r}")
        elif (status == 204 if accepted == NO_CONTENT
              else status == 200 and accepted in response.get_data(as_text=True)):
            self.record(target, "accepted", str)
        else:
            self.record(target, "rejected", str)


def _reached(page: str, marker: str, step: str) -> str:
    """The page, if it is the step a target's inputs are posted to; else stop the run.

    A target whose set-up page is refused (a code budget used up, a changed page) would post
    every input to the wrong step and count each one as rejected: the run of 2026-11-29 lost
    three targets that way to the daily per-client code cap.
    """
    if marker not in page:
        raise RuntimeError(f"could not reach {step}: {page[:300]!r}")
    return page


def _tokens(page: str) -> dict[str, st.SearchStrategy[str]]:
    """The flow, CSRF and language fields of a page."""
    return {"flow": st.just(_hidden(page, "flow")),
            "csrf_token": st.just(_hidden(page, "csrf_token")),
            "lang": st.sampled_from(("zh_CN", "en"))}


def fuzz(run: Run, target: str, n: int, unit_seed: int | None = None) -> None:
    """Send n generated inputs to one target (from Hypothesis seed unit_seed when given)."""
    config = settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
    now = str(int(time.time()))
    valid = {"ap": AP_ID, "mac": "02:00:00:00:ff:01", "ip": "10.9.0.2", "gw": "10.9.0.1:2050",
             "url": "http://example.com/", "ts": now, "nonce": "0"}

    if target == "redirect":
        @config
        @given(changes=st.dictionaries(st.sampled_from(REDIRECT_FIELDS), HOSTILE, max_size=3),
               nonce=st.uuids(), signed=st.booleans(), extra=st.dictionaries(_TEXT, _TEXT,
                                                                             max_size=2))
        def one(changes: dict[str, str], nonce: uuid.UUID, signed: bool,
                extra: dict[str, str]) -> None:
            values = valid | {"nonce": nonce.hex} | changes
            args = extra | values | {"sig": redirect_signature(AP_SECRET, values) if signed
                                     else "0" * 64}
            run.send(target, 'name="flow"', "GET", "/?" + urlencode(args))
    elif target == "fas":
        fields = st.dictionaries(
            st.sampled_from(("clientip", "clientmac", "gatewayname", "hid", "gatewayaddress",
                             "authdir", "originurl", "redir", "tok")),
            st.one_of(HOSTILE, st.just(AP_ID), st.just("10.9.0.1:2050")), max_size=6)

        @config
        @given(fields=fields, raw=st.one_of(st.none(), HOSTILE), plain=st.booleans())
        def one(fields: dict[str, str], raw: str | None, plain: bool) -> None:
            if raw is not None:
                args = {"fas": raw}
            elif plain:
                args = fields | {"hid": fields.get("hid", "x")}
            else:
                encoded = ", ".join(f"{k}={v}" for k, v in fields.items())
                args = {"fas": encoded}
            run.send(target, 'name="flow"', "GET", "/?" + urlencode(args))
    elif target in ("signin", "lang", "draft"):
        form = _form(_tokens(run.splash()) | {
            "phone": st.integers(10**7, 10**8 - 1).map(lambda k: f"139{k}"),
            "consent": st.just("y"),
        })
        switch_to = st.one_of(st.sampled_from(("en", "zh_CN")), HOSTILE)

        @config
        @given(data=form, switch_to=switch_to)
        def one(data: dict[str, str], switch_to: str) -> None:
            if target == "signin":
                run.send(target, 'name="code"', "POST", "/signin", data)
            elif target == "lang":
                run.send(target, 'name="phone"', "POST",
                         "/lang?" + urlencode({"lang": switch_to}), data)
            else:
                run.send(target, NO_CONTENT, "POST", "/draft", data)
    elif target == "identity":
        current = {"page": run.identity_page()}
        form = _form(CURRENT_TOKENS | {
            "name": st.sampled_from(("张三", "王小明", "Anna Müller")),
            "id_type": st.sampled_from(ID_TYPES),
            "id_number": st.sampled_from(("E1234567", "110101199003077777")),
            "unit": st.sampled_from(("visitor", "", "1", "50", "100")),
        })

        @config
        @given(data=form)
        def one(data: dict[str, str]) -> None:
            # That number has signed in: the next inputs go to a new one.
            run.send_on(current, target, DONE, "/identity", data, run.identity_page)
    elif target in ("change", "again"):
        waiting = {"page": run.code_page()}

        @config
        @given(data=_form(CURRENT_TOKENS))
        def one(data: dict[str, str]) -> None:
            # A changed flow is back at its number: the next inputs go to a new one.
            run.send_on(waiting, target, 'name="phone"', f"/{target}", data,
                        run.code_page if target == "change" else None)
    elif target in ("verify", "resend"):
        page = run.code_page()
        form = _form(_tokens(page) | {"code": st.from_regex(r"\A[0-9]{6}\Z")})

        @config
        @given(data=form)
        def one(data: dict[str, str]) -> None:
            if target == "verify":
                run.send(target, 'name="id_number"', "POST", "/verify", data)
            else:
                run.send(target, 'name="code"', "POST", "/resend", data)
    elif target == "one_tap":
        page = run.splash()

        @config
        @given(data=_form(_tokens(page)))
        def one(data: dict[str, str]) -> None:
            run.send(target, DONE, "POST", "/one-tap", data)
    elif target == "resume":
        page = run.splash()
        query = _form({"f": st.just(_hidden(page, "flow")),
                       "lang": st.sampled_from(("en", "zh_CN")), "full": st.just("1")})

        @config
        @given(query=query)
        def one(query: dict[str, str]) -> None:
            run.send(target, 'name="flow"', "GET", "/s?" + urlencode(query))
    else:
        raise SystemExit(f"unknown target {target}")
    if unit_seed is not None:
        one = seed(unit_seed)(one)
    started = time.perf_counter()
    one()
    run.seconds[target] = run.seconds.get(target, 0.0) + time.perf_counter() - started


TARGETS = ("redirect", "fas", "signin", "verify", "identity", "resend", "one_tap", "resume",
           "lang", "draft", "change", "again")


Unit = tuple[str, int, int]  # target, unit number, inputs
_WORKER: dict[str, Run] = {}


def unit_seed(run_seed: int, target: str, index: int) -> int:
    """The Hypothesis seed of one unit: stable across runs, different for every unit."""
    digest = hashlib.sha256(f"{run_seed}\x00{target}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _start_worker(settings_: Settings, counter: Any) -> None:
    """A worker process's portal app (its own, on the shared registry and Redis prefix)."""
    logging.basicConfig(level=logging.ERROR)
    with counter.get_lock():
        counter.value += 1
        worker = counter.value
    _WORKER["run"] = Run(settings_, worker)


def run_unit(job: tuple[Unit, int]) -> dict[str, Any]:
    """Fuzz one unit in this worker; its counts, seconds and first failures."""
    (target, index, size), run_seed = job
    run = _WORKER["run"]
    run.counts, run.failures, run.seconds = {}, [], {}
    fuzz(run, target, size, unit_seed(run_seed, target, index))
    return {"target": target, "index": index, "seconds": run.seconds[target],
            "counts": dict(run.counts.get(target, collections.Counter())),
            "failures": run.failures}


def run_units(settings_: Settings, todo: list[Unit], jobs: int, run_seed: int
              ) -> Iterator[dict[str, Any]]:
    """Each unit's result as it finishes, from up to jobs worker processes."""
    if not todo:
        return
    # spawn: the workers start clean, without the parent's database and Redis connections.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with context.Pool(min(jobs, len(todo)), initializer=_start_worker,
                      initargs=(settings_, counter)) as pool:
        yield from pool.imap_unordered(run_unit, [(unit, run_seed) for unit in todo])


def load_state(path: Path, key: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Finished units of an earlier run with the same seed, inputs and chunk (else none)."""
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if {name: state.get(name) for name in key} != key:
        return {}
    done: dict[str, dict[str, Any]] = state["done"]
    return done


def save_state(path: Path, key: dict[str, int], done: dict[str, dict[str, Any]]) -> None:
    """Write the finished units (to a temporary file first: a kill leaves the old state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**key, "done": done}))
    temporary.replace(path)


def main() -> int:
    """Parse the command line, fuzz each target's units (in worker processes), print the
    counts and throughput; exit 1 when any input got a 5xx or raised."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--chunk", type=int, default=2_000,
                        help="inputs per unit: the state file is written after each unit")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--state", type=Path, default=None,
                        help="resume file (default bench/out/form_fuzz_<seed>_<inputs>_<chunk>"
                             ".json)")
    parser.add_argument("--fresh", action="store_true", help="ignore an earlier state file")
    args = parser.parse_args()
    if args.inputs < 1 or args.chunk < 1 or args.jobs < 1:
        parser.error("--inputs, --chunk and --jobs must be at least 1")
    targets = args.targets.split(",")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    logging.basicConfig(level=logging.ERROR)
    key = {"seed": args.seed, "inputs": args.inputs, "chunk": args.chunk}
    state = args.state or ROOT / "bench" / "out" / (
        f"form_fuzz_{args.seed}_{args.inputs}_{args.chunk}.json")
    done = {} if args.fresh else load_state(state, key)
    units = [(target, index, min(args.chunk, args.inputs - start)) for target in targets
             for index, start in enumerate(range(0, args.inputs, args.chunk))]
    todo = [unit for unit in units if f"{unit[0]}:{unit[1]}" not in done]
    if len(todo) < len(units):
        print(f"resuming from {state}: {len(units) - len(todo)} of {len(units)} units done",
              flush=True)
    run_id = uuid.uuid4().hex[:8]
    base = Settings.load(environ={})
    # No code budget may run out over a million inputs from one address and one AP: the
    # verify, identity, resend, change and again targets each start from a code sent.
    settings_ = dataclasses.replace(bench_settings(run_id, args.database, base),
                                    portal_otp_daily_per_ip=10**9,
                                    portal_otp_hourly_per_ap=10**9)
    started, sent = time.perf_counter(), 0
    try:
        if todo:
            populate(settings_, 50)
        for result in run_units(settings_, todo, args.jobs, args.seed):
            done[f"{result['target']}:{result['index']}"] = result
            save_state(state, key, done)
            counts = result["counts"]
            total = sum(counts.values())
            sent += total
            left = sum(size for target, index, size in todo if f"{target}:{index}" not in done)
            elapsed = time.perf_counter() - started
            print(f"{result['target']:9} unit {result['index'] + 1:3}: {total:6,} inputs, "
                  f"5xx {counts.get('5xx', 0)}, {total / result['seconds']:5.0f} inputs/s; "
                  f"about {left * elapsed / max(sent, 1) / 60:.1f} min left", flush=True)
    finally:
        client = redis.Redis.from_url(settings_.redis_url)
        for stale in client.scan_iter(match=f"{settings_.redis_key_prefix}*", count=1000):
            client.delete(stale)
        if args.database == "postgresql":
            local_services.drop_database(base, f"bench_{run_id}")
    errors = 0
    failures: list[str] = []
    cpu_seconds = 0.0
    for target in targets:
        results = [done[f"{t}:{i}"] for t, i, _size in units if t == target]
        counts: collections.Counter[str] = collections.Counter()
        for result in results:
            counts.update(result["counts"])
            failures += result["failures"]
        seconds = sum(result["seconds"] for result in results)
        cpu_seconds += seconds
        total = sum(counts.values())
        errors += counts["5xx"]
        print(f"{target:9} inputs {total:7,}  accepted {counts['accepted']:7,}  "
              f"rejected {counts['rejected']:7,}  5xx {counts['5xx']:3}  "
              f"{total / max(seconds, 1e-9):7.0f} inputs/s")
    for failure in failures[:10]:
        print("5xx:", failure)
    total = sum(sum(r["counts"].values()) for r in done.values()
                if r["target"] in targets)
    print(f"all       inputs {total:7,}  5xx {errors}  {total / max(cpu_seconds, 1e-9):.0f} "
          f"inputs/s per worker over {cpu_seconds:.1f} s in the workers, "
          f"{time.perf_counter() - started:.1f} s wall for this run, state {state}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
