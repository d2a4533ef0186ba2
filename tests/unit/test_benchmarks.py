"""The benchmarks' bookkeeping (no training here): benchmarks/paired.py
and the NASS benchmark's corpus copy and log parsing."""

import importlib.util
import math
import os

import pytest
import soundfile as sf


def load(name):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture
def cmcr(monkeypatch):
    """The CMCR-Net ablation with no model built and any code resuming."""
    cmcr = load("cmcr_ablation")
    monkeypatch.setattr(cmcr, "parameters", lambda arm: 1)
    monkeypatch.setattr(cmcr, "effective_hparam", lambda out, key: 0.0)
    monkeypatch.setattr(cmcr.provenance, "code_identity", lambda: "code")
    return cmcr


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
    analysis = load("cmcr_ablation_analysis")

    def run(stage, arm, seed, pesq, train=None):
        items = {f"u{k}": {"pesq": pesq + 0.01 * ((k * seed) % 3),
                           "estoi": 0.8, "si_sdr": 10.0}
                 for k in range(6)}
        return {"stage": stage, "arm": arm, "seed": seed, "items": items,
                "means": analysis.mean_scores(items), "parameters": 1000,
                "train": {"branch_pull_grad_cosine": -0.5,
                          "branch_contrast": 0.002, **(train or {})}}

    runs = [run("validation", "full", s, 2.0) for s in (1, 2)]
    runs += [run("validation", "contrast/10", s, 2.1,
                 {"contrast_grad_ratio": 0.05 * s}) for s in (1, 2)]
    runs += [run("test", "full", s, 2.0) for s in (4, 5, 6)]
    runs += [run("test", "no_cr", s, 1.8 + 0.01 * s) for s in (4, 5, 6)]
    data = {"runs": runs}
    deltas = analysis.seed_deltas(data, "validation", "contrast/10")
    assert deltas["pesq"] == pytest.approx(0.1)
    data["choice"] = analysis.choose_contrast({"contrast/10": deltas})
    assert data["choice"]["weight"] == 10 and data["choice"]["passed"]
    rows = {r["arm"]: r for r in analysis.summarize_test(data)}
    no_cr = rows["no_cr"]["effects"]["pesq"]
    assert no_cr["mean"] == pytest.approx(-0.15)
    assert no_cr["low"] < -0.15 < no_cr["high"] < 0
    assert rows["no_cr"]["utterances"] == 6 and "effects" not in rows["full"]
    data["noisy_valid"] = {"pesq": 1.5, "estoi": 0.75, "si_sdr": 8.0}
    table = analysis.markdown_table(data)
    lines = table.splitlines()
    assert ("| noisy input | — | 1.50 | 0.750 | 8.00 | — | — | — | — | — "
            "| — |") in lines
    full = next(line for line in lines if line.startswith("| full | 2 |"))
    assert full.endswith("| 0.800 | 10.00 | — | — | — | — | 2.00e-03 | — |")
    contrast = next(line for line in lines if line.startswith(
        "| contrast/10 | 2 |"))
    assert contrast.endswith("| +0.100 | +0.100, +0.100 | +0.000 | +0.00 "
                             "| 2.00e-03 | 0.075 |")
    assert "| no_cr | 3 × 6 |" in table and "| -0.150 [-0.1" in table
    assert "| 1,000 | — / -0.50 / — |" in table


def test_cmcr_arm_stopped_midway_resumes_from_its_folder(tmp_path, cmcr,
                                                         monkeypatch):
    seen = []

    def run_recipe(recipe, yaml, overrides, threads):
        out = overrides["output_folder"]
        seen.append(sorted(os.listdir(out)))
        with open(os.path.join(out, "train_log.txt"), "a") as fout:
            fout.write("epoch: 1, lr: 1e-3 - train loss: 0.5 - valid "
                       "loss: 0.4\n")
        if len(seen) == 1:
            raise RuntimeError("stopped")  # a session's end
        with open(os.path.join(out, "valid_results.csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n")
        return 1.0

    monkeypatch.setattr(cmcr, "run_recipe", run_recipe)
    job = {"stage": "validation", "arm": "full", "seed": 1}
    args = (job, cmcr.QUICK, str(tmp_path), "/ssl", 1, True)
    with pytest.raises(RuntimeError):
        cmcr.run_arm(*args)
    record = cmcr.run_arm(*args)
    assert seen == [["benchmark_run.json"],
                    ["benchmark_run.json", "train_log.txt"]]
    assert record["resumed"]
    record = cmcr.run_arm({**job, "seed": 2}, *args[1:])
    assert seen[-1] == ["benchmark_run.json"] and "resumed" not in record


def test_cmcr_arm_stopped_by_ctrl_c_goes_on_on_another_machine(
        tmp_path, cmcr, monkeypatch):
    import shutil

    from tests.unit.fake_runs import run_stopped_once

    seen = []  # two epochs; the first start stops after one (Ctrl-C)
    monkeypatch.setattr(cmcr, "run_recipe", run_stopped_once(
        seen, 1, lambda overrides: 2, name="model.ckpt"))
    work, models = str(tmp_path / "runs"), str(tmp_path / "models")
    job = {"stage": "validation", "arm": "full", "seed": 1}
    other = {**job, "seed": 2}  # not started: nothing to keep
    args = (cmcr.QUICK, work, "/ssl", 1, True, models)
    with pytest.raises(KeyboardInterrupt):
        cmcr.run_arm(job, *args)
    kept = cmcr.archive_stopped([job, other], work, models)
    assert kept == [cmcr.unfinished_archive(models, job)]

    shutil.rmtree(work)  # a fresh machine
    record = cmcr.run_arm(job, *args)
    assert seen == [0, 1] and record["resumed"]  # went on from epoch 1
    assert len(record["valid_losses"]) == 2  # both epochs' (best epoch)
    assert not os.path.exists(kept[0])  # finished: only its record stays
    with open(os.path.join(work, cmcr.job_id(job), "save", "CKPT+1",
                           "model.ckpt"), "rb") as fin:
        assert fin.read() == bytes([1])


def test_cmcr_test_table_with_an_arm_done_before_full():
    """An arm that finishes before ``full`` of its seed has no paired
    effect yet; the table is written all the same."""
    analysis = load("cmcr_ablation_analysis")
    items = {"u1": {"pesq": 1.5, "estoi": 0.8, "si_sdr": 10.0},
             "u2": {"pesq": 1.7, "estoi": 0.7, "si_sdr": 12.0}}
    train = {"cr_grad_cosine": 0.1, "branch_contrast": 0.05}

    def run(arm, seed):
        return {"id": f"test/{arm}/seed{seed}", "stage": "test", "arm": arm,
                "seed": seed, "items": items, "train": train,
                "parameters": 10,
                "means": {"pesq": 1.6, "estoi": 0.75, "si_sdr": 11.0}}
    data = {"runs": [run("no_cr", 4)], "choice": None}
    rows = analysis.summarize_test(data)
    assert [r["arm"] for r in rows] == ["no_cr"] and "effects" not in rows[0]
    table = analysis.markdown_table(data)
    assert ("| no_cr | 1 × — | 1.60 | 0.750 | 11.00 | — | — | — | — | — "
            "| 10 | +0.10 / — / — | 0.050 | — | — |") in table
    assert "Test stage under way: 1 of 30 runs." in table
    data["runs"].append(run("full", 4))
    row = next(r for r in analysis.summarize_test(data) if r["arm"] == "no_cr")
    assert row["utterances"] == 2 and row["effects"]["pesq"]["mean"] == 0


@pytest.mark.parametrize("stop", [
    KeyboardInterrupt,  # Ctrl-C once the first run is done
    TypeError,  # the results could not be recorded
])
def test_ctrl_c_or_a_failing_handler_starts_no_waiting_job(stop):
    import time

    from benchmarks.paired import run_in_phases

    started = []

    def work(job):
        started.append(job)
        time.sleep(0.2)
        return job

    def on_result(job, result):
        raise stop

    with pytest.raises(stop):
        run_in_phases([[1, 2, 3, 4], [5]], work, 1, on_result)
    assert started[0] == 1 and len(started) <= 2  # 3, 4 and 5 never start


def test_cmcr_step7_reading_only_on_the_whole_design():
    """The rule is read per arm once every arm has every test seed; a part
    whose removal lowers PESQ in every seed helps, an arm equal to ``full``
    is a null; the eSTOI gate is stated against the noisy input."""
    analysis = load("cmcr_ablation_analysis")
    shift = {"no_cr": -0.3, "contrast": 0.0}

    def run(arm, seed):
        items = {f"u{k}": {"pesq": 2.0 + shift.get(arm, 0.0)
                           + 0.01 * ((k * seed + len(arm)) % 5),
                           "estoi": 0.8, "si_sdr": 10.0 + 0.1 * (k % 3)}
                 for k in range(8)}
        return {"stage": "test", "arm": arm, "seed": seed, "items": items,
                "means": analysis.mean_scores(items), "parameters": 10,
                "train": {}}

    arms = list(analysis.ARMS)
    data = {"runs": [run(a, s) for a in arms for s in (4, 5, 6, 7)],
            "noisy_test": {"pesq": 1.5, "estoi": 0.85, "si_sdr": 8.0}}
    assert all("reading" not in r for r in analysis.summarize_test(data))
    assert "Reading" not in analysis.markdown_table(data)
    data["runs"] += [run(a, 8) for a in arms]
    rows = {r["arm"]: r for r in analysis.summarize_test(data)}
    assert "reading" not in rows["full"]
    assert rows["no_cr"]["reading"] == "part helps"
    assert rows["contrast"]["reading"] == "null"
    table = analysis.markdown_table(data)
    assert "| part helps |" in table
    assert ("Reading (step 7's rule, from the table): no_cr: part helps; "
            "no_contrastive_attention: null (MDE 0.0") in table
    assert "has not learned intelligibility" in table  # 0.800 < 0.840
    assert "per seed (in seed order) and the p before Holm: no_cr -0." in table
    data["noisy_test"]["estoi"] = 0.8
    table = analysis.markdown_table(data)
    assert "meets step 2's gate (at least 0.790)" in table
