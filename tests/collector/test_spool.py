"""Unit tests of the on-disk spool."""

from __future__ import annotations

from pathlib import Path

from collector.spool import Spool


def test_batches_survive_a_restart_in_order(tmp_path: Path) -> None:
    """What was appended is there, oldest first, for a new process."""
    spool = Spool(tmp_path)
    spool.append(["a 1", "b 2"])
    spool.append(["c 3"])
    reopened = Spool(tmp_path)
    assert reopened.depth == 3 and reopened.files == 2
    oldest = reopened.oldest()
    assert oldest is not None and Spool.read(oldest) == ["a 1", "b 2"]
    reopened.remove(oldest)
    assert reopened.depth == 1
    reopened.append(["d 4"])  # sequence numbers continue after the survivors
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["000000000002-1.lp", "000000000003-1.lp"]


def test_an_interrupted_append_is_discarded(tmp_path: Path) -> None:
    """A .tmp file (crash during append; its batch was never acked) is removed at start."""
    (tmp_path / "000000000001-5.tmp").write_text("partial")
    spool = Spool(tmp_path)
    assert spool.depth == 0 and not list(tmp_path.iterdir())


def test_unicode_and_escaped_lines_round_trip(tmp_path: Path) -> None:
    """Line protocol with escapes and non-ASCII text is read back byte for byte."""
    lines = ['presence,ap=a\\ b ssid="网络 \\"x\\"" 1', "presence,ap=c device=\"d\" 2"]
    spool = Spool(tmp_path)
    spool.append(lines)
    oldest = spool.oldest()
    assert oldest is not None and Spool.read(oldest) == lines
