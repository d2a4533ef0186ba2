"""The NASS benchmark's bookkeeping (no training here)."""

import importlib.util
import math
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
PATH = os.path.join(REPO, "benchmarks", "nass_vs_baseline.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nass_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(variant, seed, si_snr_i, step):
    return {
        "backbone": "convtasnet",
        "variant": variant,
        "seed": seed,
        "steps": 10,
        "step_seconds_median": step,
        "step_cpu_seconds_median": step / 2,
        "si-snr_i": si_snr_i,
        "sdr_i": si_snr_i + 0.5,
        "noise_si-snr": -1.0,
    }


def test_summary_pairs_seeds_and_formats(bench):
    runs = [
        fake_run("baseline", 1, 2.0, 0.10),
        fake_run("nass", 1, 3.0, 0.12),
        fake_run("baseline", 2, 4.0, 0.10),
        fake_run("nass", 2, 4.0, 0.14),
    ]
    overheads = {
        "convtasnet": {
            "bench_baseline": 1000,
            "bench_overhead": 64,
            "paper_baseline": 6_000_000,
            "paper_overhead": 65_536,
        }
    }
    (row,) = bench.summarize(runs, overheads)
    assert row["baseline_si-snr_i"] == (3.0, pytest.approx(math.sqrt(2)))
    assert row["delta_si-snr_i"] == (0.5, pytest.approx(math.sqrt(0.5)))
    assert row["step_seconds_ratio"][0] == pytest.approx(1.3)
    table = bench.markdown_table([row], 2)
    assert "| convtasnet | 10 | 3.00 ± 1.41 | 3.50 ± 0.71 | 0.50 ± 0.71" in (
        table
    )
    assert "65,536 of 6,000,000" in table

