"""benchmarks/asr_downstream.py's bookkeeping (no training here): the run
order, the paired summaries against the noisy and the baseline arms, and
the tables."""

import importlib.util
import math

import pytest


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("benchmarks.asr_downstream")


def test_every_run_comes_after_what_it_needs(bench):
    phases = bench.jobs_by_phase([1, 2])
    position = {bench.job_id(job): index
                for index, phase in enumerate(phases) for job in phase}
    for job_id, index in position.items():
        kind, name, seed = job_id.split("/")
        needs = []
        if kind == "asr" and name in bench.ASR_ARMS:
            enhancer = bench.ASR_ARMS[name][1]
            if enhancer:
                needs.append(f"enhancer/{enhancer}/{seed}")
        if job_id.startswith("enhancer/ccr"):
            needs.append(f"enhancer/backbone/{seed}")
        if kind == "separation_asr":
            needs += [f"asr/clean_narrowband/{seed}"] + [
                f"separator/{s}/{seed}" for s in bench.SEPARATORS]
        for need in needs:
            assert position[need] < index, (job_id, need)
    assert len(position) == 2 * (len(bench.ENHANCERS) + len(bench.ASR_ARMS)
                                 + len(bench.SEPARATORS) + 1)


def test_summaries_pair_each_arm_with_the_noisy_one(bench):
    runs = []
    for seed, noisy in ((1, 40.0), (2, 50.0), (3, 45.0)):
        for arm, wer in (("noisy", noisy), ("clean", noisy - 30),
                         ("enhanced_backbone", noisy - 5)):
            runs.append({"kind": "asr", "arm": arm, "name": arm,
                         "seed": seed, "WER": wer, "CER": wer / 3,
                         "steps": 1560, "wall_seconds": 600.0})
        runs.append({"kind": "separation_asr", "seed": seed, "results": {
            "sepformer": {"WER": 80.0 + seed, "CER": 40.0, "si_snr": 5.0},
            "nass_sepformer": {"WER": 78.0 + seed, "CER": 39.0,
                               "si_snr": 4.0},
        }})
    voicebank, wham = bench.summaries(runs)
    rows = {row["arm"]: row for row in voicebank}
    assert [row["arm"] for row in voicebank] == [
        "clean", "noisy", "enhanced_backbone"]
    assert rows["enhanced_backbone"]["delta_WER"] == pytest.approx(-5.0)
    assert rows["enhanced_backbone"]["delta_WER_ci95"] == pytest.approx(0.0)
    assert math.isnan(rows["noisy"]["delta_WER"])
    nass = next(row for row in wham if row["arm"] == "nass_sepformer")
    assert nass["delta_WER"] == pytest.approx(-2.0)
    table = bench.markdown_tables(voicebank, wham, runs)
    assert "| enhanced_backbone | 3 | 40.00 ± 5.00 |" in table
    assert "| nass_sepformer | 3 | 80.00 ± 1.00 |" in table
