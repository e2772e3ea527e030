"""benchmarks/speed.py's parts that need no server: how round figures become cells and ratios, and
the repository variants it adds (an unbatched copy, an ensemble whose step does nothing).
(The benchmark itself is run by hand: minutes.)"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import speed  # noqa: E402
from tritonforge.loadtests.native import LoadResult  # noqa: E402


def _figure(rate: float, p99: float = 3.0) -> speed.Figure:
    return speed.Figure(LoadResult("m", 32, 4.0, int(rate * 4), rate, 1.0, 2.0, p99, 0, 0.05), server_us_per_request=100.0)


def test_a_ratio_is_the_median_of_the_rounds_ratios_with_their_range():
    a = [_figure(900), _figure(1000), _figure(500)]
    b = [_figure(1000), _figure(1000), _figure(1000)]
    assert speed.ratio(a, b) == "**0.90x** (0.50-1.00)"


def test_a_ratio_pairs_rounds_not_medians():
    # Each round's pair shares that round's machine: 2x in every round, whatever the medians say.
    a = [_figure(200), _figure(4000), _figure(600)]
    b = [_figure(100), _figure(2000), _figure(300)]
    assert speed.ratio(a, b) == "**2.00x** (2.00-2.00)"


def test_a_cell_is_the_median_round():
    cell = speed.fmt([_figure(300, p99=9.0), _figure(100, p99=1.0), _figure(200, p99=5.0)])
    assert cell.startswith("200 req/s, p99 5.0 ms, server 100 us/req")


def test_a_missing_side_gives_a_dash():
    assert speed.ratio(None, [_figure(1)]) == "-" and speed.fmt(None) == "-"


def _config(name: str, extra: str = "") -> str:
    return f'name: "{name}"\nmax_batch_size: 8\n{extra}'


def test_the_unbatched_copy_drops_the_batcher_from_every_config(tmp_path):
    model = tmp_path / "mlp"
    (model / "1").mkdir(parents=True)
    (model / "configs").mkdir()
    batcher = "dynamic_batching {\n  max_queue_delay_microseconds: 100\n}\n"
    (model / "config.pbtxt").write_text(_config("mlp", batcher))
    (model / "configs" / "cpu.pbtxt").write_text(_config("mlp", batcher))
    speed.copy_model(tmp_path, "mlp", "mlp_unbatched", drop_batcher=True)
    for config in (tmp_path / "mlp_unbatched" / "config.pbtxt", tmp_path / "mlp_unbatched" / "configs" / "cpu.pbtxt"):
        text = config.read_text()
        assert 'name: "mlp_unbatched"' in text and "dynamic_batching" not in text
    assert "dynamic_batching" in (model / "config.pbtxt").read_text()  # the original is untouched


def test_the_empty_step_ensemble_points_at_a_step_that_answers_a_stored_row(tmp_path, monkeypatch):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text(_config("m"))
    (tmp_path / "m_preprocess" / "1").mkdir(parents=True)
    (tmp_path / "m_preprocess" / "config.pbtxt").write_text(_config("m_preprocess", 'backend: "python"\n'))
    ensemble = _config("m_ensemble", 'step { model_name: "m_preprocess" }\nstep { model_name: "m" }\n')
    (tmp_path / "m_ensemble" / "1").mkdir(parents=True)
    (tmp_path / "m_ensemble" / "config.pbtxt").write_text(ensemble)
    row = {"input": np.arange(3, dtype=np.float32).reshape(1, 3), "city": np.array([["nice"]], dtype=object)}
    monkeypatch.setattr(speed, "one_row", lambda repo, model: row)
    speed.add_empty_step_ensemble(tmp_path, "m", "m_ensemble")
    copied = (tmp_path / "m_ensemble_emptystep" / "config.pbtxt").read_text()
    assert 'name: "m_ensemble_emptystep"' in copied and 'model_name: "m_preprocess_emptystep"' in copied
    assert 'model_name: "m"' in copied
    step = tmp_path / "m_preprocess_emptystep"
    assert 'name: "m_preprocess_emptystep"' in (step / "config.pbtxt").read_text()
    assert (step / "1" / "model.py").read_text() == speed.EMPTY_STEP
    stored = np.load(step / "1" / "row.npz", allow_pickle=False)
    assert stored["input"].tolist() == [[0.0, 1.0, 2.0]] and stored["city"].tolist() == [["nice"]]
