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


def _enhancement_data(av_gain, fallback_gain, seeds=(1, 2, 3, 4, 5),
                      items=40):
    """Synthetic test runs: per-item SDRs with known paired effects."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.normal(5.0, 3.0, items)
    test = {}
    for seed in seeds:
        def scores(shift, noise=0.3):
            values = base + shift + rng.normal(0, noise, items)
            return {f"m{i}": {"sdr": float(v), "si_sdr": float(v) - 1,
                              "pesq": 2.0, "stoi": 0.8}
                    for i, v in enumerate(values)}  # fmt: skip

        items_ = {"mixture": scores(-4.0), "a_vae": scores(0.0),
                  "av_vae": scores(av_gain), "nmf": scores(-1.0),
                  "supervised": scores(2.0)}  # fmt: skip
        corrupted = {"none/fallback": scores(av_gain),
                     "rotated/fallback": scores(fallback_gain),
                     "rotated/plain": scores(-2.0)}  # fmt: skip
        latent = {"kl": 0.5, "z_sensitivity": 0.3, "lips_sensitivity": 1.0}
        test[str(seed)] = {
            "items": items_, "corrupted": corrupted,
            "training": {"av_vae": {"latent": latent},
                         "av_vae_none": {"latent": latent}},
        }  # fmt: skip
    return {"test": test}


def test_enhancement_summary_recovers_known_effects():
    bench = importlib.import_module("benchmarks.av_enhancement_analysis")
    data = _enhancement_data(av_gain=1.0, fallback_gain=-0.1)
    summary = bench.summarize(data)
    assert summary["seeds"] == [1, 2, 3, 4, 5] and summary["items"] == 40
    cell, mde = summary["pairs"]["av_vae - a_vae"]["sdr"]
    mean, low, high = (float(x) for x in
                       cell.replace("[", "").replace("]", "")
                       .replace(",", "").split())  # fmt: skip
    assert low < 1.0 < high and abs(mean - 1.0) < 0.1
    assert 0 < mde < 0.5
    assert summary["corrupted"]["rotated/fallback"]["passes"]
    assert not summary["corrupted"]["rotated/plain"]["passes"]
    table = bench.markdown_table(dict(data, summary=summary))
    assert "| rotated/plain | -2.0" in table
    assert "| av_vae - a_vae | +1.0" in table


def test_enhancement_latent_stats_take_the_best_epoch(tmp_path):
    bench = importlib.import_module("benchmarks.av_enhancement")
    (tmp_path / "train_log.txt").write_text(
        "epoch: 1, lr: 1e-3 - train loss: 3 - valid loss: 2.5, valid "
        "latent_kl: 4.0, valid latent_z_sensitivity: 0.2\n"
        "epoch: 2, lr: 1e-3 - train loss: 2 - valid loss: 2.9, valid "
        "latent_kl: 9.0, valid latent_z_sensitivity: 0.9\n"
    )
    assert bench.latent_stats(str(tmp_path)) == {
        "epoch": 1, "kl": 4.0, "z_sensitivity": 0.2
    }
