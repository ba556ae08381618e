"""bench/parser_fuzz.py in chunks: progress per chunk, a resumable state, chunks reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "parser_fuzz.py"


def fuzz(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the bench with these arguments; its output."""
    return subprocess.run([sys.executable, str(BENCH), *arguments], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_fuzz_runs_in_chunks_reports_progress_and_resumes(tmp_path: Path) -> None:
    """Three chunks with a progress line each and a final figure; a second run resumes from the
    state file instead of starting over; chunk 2 alone generates exactly what it did in the run."""
    state = tmp_path / "state.json"
    first = fuzz("--messages", "300", "--chunk", "100", "--state", str(state))
    assert first.returncode == 0, first.stdout + first.stderr
    progress = [line for line in first.stdout.splitlines() if line.startswith("chunk ")]
    assert [line.split(":")[0] for line in progress] == ["chunk 1/3", "chunk 2/3", "chunk 3/3"]
    assert "300 of 300 done" in progress[-1]
    assert "messages            300 " in first.stdout and "unhandled           0" in first.stdout
    done = json.loads(state.read_text())["done"]
    assert sorted(done) == ["0", "1", "2"]

    again = fuzz("--messages", "300", "--chunk", "100", "--state", str(state))
    assert "resuming from" in again.stdout and "3 of 3 chunks done" in again.stdout
    assert not any(line.startswith("chunk ") for line in again.stdout.splitlines())
    summary = [line for line in first.stdout.splitlines() if line.startswith("good events")]
    assert summary == [line for line in again.stdout.splitlines()
                       if line.startswith("good events")]

    alone = fuzz("--messages", "300", "--chunk", "100", "--only", "1",
                 "--state", str(tmp_path / "other.json"))
    placed = int(alone.stdout.split("good events placed")[1].split()[0].replace(",", ""))
    assert placed == done["1"]["good_placed"] > 0
