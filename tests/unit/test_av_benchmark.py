"""The AV-VAE benchmark's statistics and tables (no training here)."""

import importlib.util
import math

import pytest


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("benchmarks.av_vae_benchmark")


def _scores(sdr, order=math.nan):
    return {"sdr": sdr, "sdr_i": sdr + 1, "si_sdr": sdr - 1,
            "si_sdr_i": sdr, "pesq": 1.5, "stoi": 0.7,
            "order_correct": order}  # fmt: skip


def test_paired_differences_and_intervals(bench):
    runs = {
        1: {"av_vae": _scores(3.0, 1.0), "a_vae": _scores(1.0)},
        2: {"av_vae": _scores(4.0, 0.9), "a_vae": _scores(1.0)},
        3: {"av_vae": _scores(2.0, 1.0), "a_vae": _scores(1.5),
            "mixture": _scores(0.0)},
    }  # fmt: skip
    summary = bench.summarize(runs)
    mean, half = summary["pairs"]["av_vae - a_vae"]["sdr"]
    differences = [2.0, 3.0, 0.5]
    assert mean == pytest.approx(sum(differences) / 3)
    spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    assert half == pytest.approx(4.303 * spread / math.sqrt(3))
    # a pair present in one seed only: its mean, no interval
    only = summary["pairs"]["av_vae - mixture"]["sdr"]
    assert only[0] == 2.0 and math.isnan(only[1])
    assert summary["methods"]["av_vae"]["order_correct"][0] == pytest.approx(
        (1.0 + 0.9 + 1.0) / 3
    )
    table = bench.markdown_tables(summary)
    assert "| av_vae - a_vae | 1.83 ± " in table
    assert "| mixture | 0.00 |" in table


def test_negative_differences_are_reported_as_they_are(bench):
    runs = {s: {"av_vae": _scores(1.0), "a_vae": _scores(1.0 + s)}
            for s in (1, 2, 3)}  # fmt: skip
    pair = bench.summarize(runs)["pairs"]["av_vae - a_vae"]["sdr"]
    assert pair[0] == pytest.approx(-2.0) and pair[1] > 0
    assert "| av_vae - a_vae | -2.00 ± " in bench.markdown_tables(
        bench.summarize(runs)
    )


def test_speed_rows(bench):
    row = {"label": "batched", "audio_seconds": 2.0, "wall_seconds": 1.0,
           "seconds_per_audio_second": 0.5}  # fmt: skip
    speed = {"batched": row, "reference": dict(row, label="loop"),
             "speedup": 12.0, "max_relative_difference": 1e-15}
    table = bench.markdown_tables({"methods": {}, "pairs": {}}, speed)
    assert "| batched | 2.0 | 1.00 | 0.500 |" in table
    assert "12.0x" in table
