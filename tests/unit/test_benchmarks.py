"""The benchmarks' bookkeeping (no training here): benchmarks/paired.py
and the NASS benchmark's corpus copy and log parsing."""

import importlib.util
import math
import os

import pytest
import soundfile as sf


def load(name):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture(scope="module")
def bench():
    return load("nass_vs_baseline")


def test_louder_noise_corpus_keeps_mixtures_sums_of_parts(bench, tmp_path):
    import numpy as np

    source = tmp_path / "src"
    for split in ("tr", "cv", "tt"):
        for folder in ("s1", "s2", "noise"):
            path = source / "wav8k" / "min" / split / folder
            path.mkdir(parents=True)
            rng = np.random.default_rng(len(folder))
            sf.write(path / "a.wav", 0.2 * rng.standard_normal(800), 8000,
                     subtype="FLOAT")
    target = bench.louder_noise_corpus(str(source), str(tmp_path / "dst"),
                                       6.0)
    tt = os.path.join(target, "wav8k", "min", "tt")
    parts = {f: sf.read(os.path.join(tt, f, "a.wav"))[0]
             for f in ("s1", "s2", "noise", "mix_both")}
    assert np.allclose(parts["mix_both"],
                       parts["s1"] + parts["s2"] + parts["noise"], atol=1e-6)
    original = {f: sf.read(source / "wav8k" / "min" / "tt" / f / "a.wav")[0]
                for f in ("s1", "noise")}
    scale = parts["s1"] / original["s1"]
    louder = parts["noise"] / (original["noise"] * scale)
    assert np.allclose(louder, 10 ** (6 / 20), rtol=1e-4)


def test_last_epoch_stats_reads_the_train_log(bench, tmp_path):
    log = tmp_path / "train_log.txt"
    log.write_text(
        "epoch: 1, lr: 3.00e-03 - train loss: 9.0, train nce: 4.1 - "
        "valid loss: 8.0\n"
        "epoch: 2, lr: 3.00e-03 - train loss: 7.0, train nce: 3.2, "
        "train nce_grad_ratio: 2.5e-01 - valid loss: 6.0\n"
        "Epoch loaded: 2 - test loss: 6.5\n"
    )
    assert bench.last_epoch_stats(str(log)) == {
        "epoch": 2, "loss": 7.0, "nce": 3.2, "nce_grad_ratio": 0.25,
    }


def test_cr_summary_pairs_each_space_with_the_one_backbone_run():
    cr = load("cr_vs_baseline")

    def run(space, arm, seed, si_sdr):
        values = {m: 1.0 for m in cr.TEST_METRICS}
        values.update(si_sdr=si_sdr, cr=0.5, cr_grad_ratio=0.1,
                      wall_seconds=60.0)
        return {"space": space, "backbone": "convtasnet", "arm": arm,
                "seed": seed, **values}

    runs = [run("none", "backbone", s, v) for s, v in ((1, 5.0), (2, 6.0))]
    runs += [run("trained", "cr", 1, 5.5), run("trained", "cr", 2, 5.4),
             run("random", "cr", 1, 4.0)]
    rows = {(r["space"], r["arm"]): r for r in cr.summarize_runs(runs)}
    trained = rows[("trained", "cr")]
    assert trained["delta_si_sdr"] == pytest.approx(-0.05)
    assert trained["worst_delta_si_sdr"] == pytest.approx(-0.6)
    assert rows[("random", "cr")]["delta_si_sdr"] == pytest.approx(-1.0)
    assert math.isnan(rows[("none", "backbone")]["worst_delta_si_sdr"])
    table = cr.markdown_table(cr.summarize_runs(runs))
    assert "| trained | convtasnet | cr | 2 |" in table


def test_cmcr_ablations_are_paired_with_the_full_model():
    cmcr = load("cmcr_ablation")

    def run(arm, seed, pesq):
        values = {m: 1.0 for m in cmcr.TEST_METRICS}
        values.update(pesq=pesq, parameters=1000, wall_seconds=60.0)
        return {"arm": arm, "seed": seed, **values}

    runs = [run("cmcr_cr", 1, 2.0), run("cmcr_cr", 2, 2.2),
            run("no_cr", 1, 1.9), run("no_cr", 2, 2.0)]
    rows = {r["arm"]: r for r in cmcr.summarize_runs(runs)}
    assert rows["no_cr"]["delta_pesq"] == pytest.approx(-0.15)
    assert math.isnan(rows["cmcr_cr"]["delta_pesq"])
    assert "| no_cr | 2 | 1,000 | 1.95 | -0.15 [" in cmcr.markdown_table(
        cmcr.summarize_runs(runs)
    )
