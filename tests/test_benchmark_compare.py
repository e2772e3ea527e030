"""benchmarks/compare.py's parts that need no server: its section of docs/BENCHMARKS.md, the
figures and ratios it writes, and its refusals. (The benchmark itself is run by hand: minutes.)"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
import harness  # noqa: E402
from tritonforge.loadtests.native import LoadResult  # noqa: E402

OTHERS = "# Benchmarks\n\n## Speed (`python benchmarks/speed.py`)\n\nspeed table\n"


def _figure(rate: float, errors: int = 0, share: float = 0.05) -> compare.Figure:
    result = LoadResult("m", 32, 5.0, int(rate * 5), rate, 1.0, 2.0, 3.0, errors, share)
    return compare.Figure(result, "wrk", server_cores=1.5, machine_cores=1.9)


def test_section_replaces_only_its_own_and_keeps_the_others(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(OTHERS + "\n## Earlier comparisons (`python benchmarks/compare.py`, a Python load client)\n\nold\n"
                   "\n## Later section\n\nkept\n")
    compare.write_section(doc, compare.SECTION + "\n\nnew table\n")
    text = doc.read_text()
    assert "speed table" in text and "kept" in text and "new table" in text
    assert "old" not in text and "Earlier comparisons" not in text
    assert text.index("speed table") < text.index("new table") < text.index("kept")
    compare.write_section(doc, compare.SECTION + "\n\nnewer table\n")
    again = doc.read_text()
    assert again.count(compare.SECTION) == 1 and "newer table" in again and "new table\n" not in again


def test_section_is_appended_where_there_is_none(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(OTHERS)
    compare.write_section(doc, compare.SECTION + "\n\ntable\n")
    assert doc.read_text().startswith(OTHERS) and doc.read_text().rstrip().endswith("table")
    missing = tmp_path / "new.md"
    compare.write_section(missing, compare.SECTION + "\n\ntable\n")
    assert missing.read_text().startswith("# Benchmarks")


def test_every_figure_carries_the_generators_cpu_share_and_failures_void_a_ratio():
    good, bad = _figure(3000.0), _figure(1000.0, errors=7)
    assert "3,000 req/s" in good.cell() and "wrk 5% CPU" in good.cell()
    assert compare.ratio(compare.Pair([good], [_figure(1500.0)])) == "**2.00x**"
    assert "invalid: 7 failed requests" in compare.ratio(compare.Pair([good], [bad])) and "7 failed" in bad.cell()
    assert compare.ratio(compare.Pair([good], [])) == "-" and compare.ratio(compare.Pair()) == "-"
    # against a rate that is not a load figure (in-process rows/s)
    assert compare.ratio(compare.Pair([good]), b_rate=6000.0) == "**0.50x**"
    assert good.bound().startswith("CPU (server 1.5")  # 1.9 of 2 cores busy


def test_a_pair_is_the_median_of_its_rounds_with_their_range():
    pair = compare.Pair([_figure(3000.0), _figure(1000.0), _figure(2000.0)],
                        [_figure(1000.0), _figure(1000.0), _figure(500.0)])
    assert pair.a_figure.rate == 2000.0 and pair.b_figure.rate == 1000.0
    assert compare.ratio(pair) == "**3.00x** (1.00-4.00 over 3 rounds)"


def test_refusals_before_anything_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        compare.main(["--backend-directory", str(tmp_path / "nowhere")])
    assert caught.value.code == 2 and "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        compare.main(["--seconds", "0"])
    assert caught.value.code == 2
    one_backend = tmp_path / "onnxruntime"
    one_backend.mkdir()
    (one_backend / "libtriton_onnxruntime.so").write_bytes(b"")
    with pytest.raises(SystemExit, match="not one backend's own folder"):
        harness.ReferenceServer(tmp_path, one_backend, ["m"]).__enter__()


def test_a_server_that_crashed_is_told_from_a_refusal():
    import subprocess

    crashed = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    crashed.wait(timeout=30)
    target = compare.Target("reference", "127.0.0.1:1", "127.0.0.1:2", crashed.pid, crashed)
    with pytest.raises(compare.ServerDied, match="SIGSEGV.*#7472"):
        target.check_alive()
    compare.Target("FastAPI", "127.0.0.1:1", "", 0).check_alive()  # no process known: nothing to tell
