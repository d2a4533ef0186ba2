"""The CR protocol (issue 22): the validation choice, the claim rule, the
tables and the forks' wiring, on synthetic results (no training)."""

import math
import os
import time

import numpy as np
import pytest

from benchmarks import cr_protocol, cr_protocol_jobs, cr_protocol_tables
from benchmarks import cr_protocol_analysis as analysis

SETTINGS = {
    "ratio/0.03/shallow": {"pesq": 0.30, "si_sdr": -0.31},
    "ratio_detached/0.01/shallow": {"pesq": 0.10, "si_sdr": -0.30},
    "feature_match/0.01/shallow": {"pesq": 0.05, "si_sdr": 0.20},
    "feature_match/0.003/shallow": {"pesq": math.nan, "si_sdr": math.nan},
}


def test_choice_takes_best_pesq_within_the_margin():
    choice = analysis.choose_setting(SETTINGS)
    # -0.30 dB is within the 0.3 dB margin, -0.31 dB is not, NaN is not
    assert choice["setting"] == "ratio_detached/0.01/shallow"
    assert choice["passed"]
    assert choice["excluded"] == ["feature_match/0.003/shallow",
                                  "ratio/0.03/shallow"]
    assert "0.3 dB" in choice["why"]


def test_choice_margin_is_a_parameter():
    choice = analysis.choose_setting(SETTINGS, margin=0.5)
    assert choice["setting"] == "ratio/0.03/shallow"


def test_no_setting_within_the_margin_takes_the_least_harmful_flagged():
    deltas = {"ratio/0.03/shallow": {"pesq": 0.3, "si_sdr": -1.0},
              "ratio/0.01/deep": {"pesq": 0.1, "si_sdr": -0.4}}
    choice = analysis.choose_setting(deltas)
    assert choice["setting"] == "ratio/0.01/deep"
    assert not choice["passed"]
    assert "no gain can be claimed" in choice["why"]


def test_pesq_tie_goes_to_the_smaller_weight():
    deltas = {"ratio/0.03/shallow": {"pesq": 0.1004, "si_sdr": 0.5},
              "ratio/0.003/shallow": {"pesq": 0.1001, "si_sdr": 0.0}}
    assert (analysis.choose_setting(deltas)["setting"]
            == "ratio/0.003/shallow")


def _sweep_runs(deltas_by_seed):
    """Sweep runs whose ``continued`` differs by seed, the settings at a
    fixed paired difference."""
    runs = []
    for seed, deltas in deltas_by_seed.items():
        base = {"pesq": 2.0 + seed, "estoi": 0.7, "si_sdr": 8.0 + seed}
        runs.append({"stage": "sweep", "backbone": "b", "seed": seed,
                     "arm": "continued", "means": base, "train": {}})
        for name, (d_pesq, d_si_sdr) in deltas.items():
            runs.append({
                "stage": "sweep", "backbone": "b", "seed": seed, "arm": name,
                "means": {"pesq": base["pesq"] + d_pesq, "estoi": 0.7,
                          "si_sdr": base["si_sdr"] + d_si_sdr},
                "train": {"cr": 0.5, "cr_grad_ratio": 0.2}})
    return runs


def test_sweep_pairs_settings_with_continued_by_seed():
    runs = _sweep_runs({
        1: {"ratio/0.01/shallow": (0.2, -0.6), "ratio/0.01/deep": (0.1, 0)},
        2: {"ratio/0.01/shallow": (0.2, 0.0), "ratio/0.01/deep": (0.1, 0)},
    })
    sweep = analysis.summarize_sweep({"runs": runs})["b"]
    shallow = sweep["settings"]["ratio/0.01/shallow"]
    assert shallow["pesq"] == pytest.approx(0.2)
    assert shallow["si_sdr"] == pytest.approx(-0.3)
    assert shallow["worst_si_sdr"] == pytest.approx(-0.6)
    assert shallow["si_sdr_by_seed"] == pytest.approx([-0.6, 0.0])
    # mean SI-SDR loss 0.3 dB: within the margin, and the better PESQ
    assert sweep["choice"]["setting"] == "ratio/0.01/shallow"


def _items(rng, shift, utts=60):
    return {f"u{i}": {"pesq": 2.0 + 0.3 * math.sin(i) + shift
                      + rng.normal(0, 0.05),
                      "estoi": 0.8, "si_sdr": 10.0 + rng.normal(0, 0.1)}
            for i in range(utts)}


def _test_runs(shifts, seeds=(4, 5, 6, 7, 8)):
    rng = np.random.default_rng(0)
    return [{"stage": "test", "backbone": "b", "seed": seed, "arm": arm,
             "items": _items(rng, shift + 0.01 * seed)}
            for seed in seeds for arm, shift in shifts.items()]


def test_a_gain_the_random_space_also_gives_is_not_claimed():
    test = analysis.summarize_test({"runs": _test_runs(
        {"continued": 0.0, "cr": 0.2, "ccr_quality": 0.2,
         "cr_random": 0.2})})["b"]
    assert test["cr"]["vs_continued"]["pesq"]["low"] > 0
    assert not test["cr"]["claimed"]
    assert "claimed" not in test["cr_random"]  # the control claims nothing
    assert "holm_p" not in test["cr_random"]


def test_a_gain_above_zero_and_above_the_control_is_claimed():
    test = analysis.summarize_test({"runs": _test_runs(
        {"continued": 0.0, "cr": 0.2, "ccr_quality": -0.1,
         "cr_random": 0.0})})["b"]
    assert test["cr"]["claimed"]
    assert test["cr"]["vs_random"]["pesq"]["low"] > 0
    assert not test["ccr_quality"]["claimed"]
    assert test["cr"]["holm_p"] < 0.05


def test_nothing_is_claimed_before_every_arm_has_every_test_seed():
    runs = _test_runs({"continued": 0.0, "cr": 0.2, "ccr_quality": 0.2,
                       "ccr_similarity": 0.2, "cr_random": 0.0})
    setup = {"training": {"test_seeds": [4, 5, 6, 7, 8]}}
    whole = analysis.summarize_test({"runs": runs, "setup": setup})["b"]
    assert whole["cr"]["claimed"]
    part = [r for r in runs if not (r["arm"] == "cr_random"
                                    and r["seed"] == 8)]
    test = analysis.summarize_test({"runs": part, "setup": setup})["b"]
    assert "claimed" not in test["cr"]
    assert test["cr"]["vs_continued"]["pesq"]["low"] > 0  # still reported


def _synthetic_data():
    data = {
        "noisy_valid": {"pesq": 1.9, "estoi": 0.75, "si_sdr": 8.0},
        "noisy_test": {"pesq": 1.8, "estoi": 0.74, "si_sdr": 7.5},
        "noisy_test_utterances": 60,
        "runs": [
            {"stage": "backbone", "backbone": "b", "seed": 1,
             "means": {"pesq": 2.4, "estoi": 0.8, "si_sdr": 12.0},
             "best_epoch": 30, "epochs": 40, "plateaued": True},
            *_sweep_runs({1: {"ratio/0.01/shallow": (0.1, -0.1),
                              "ratio/0.03/shallow": (0.3, -0.9)}}),
            *_test_runs({"continued": 0.0, "cr": 0.2, "cr_random": 0.0}),
        ],
    }
    data["backbone_summary"] = analysis.summarize_backbones(data)
    data["sweep"] = analysis.summarize_sweep(data)
    data["test"] = analysis.summarize_test(data)
    return data


def test_tables_render_a_tiny_synthetic_data_dict():
    table = cr_protocol_tables.markdown_table(_synthetic_data())
    lines = table.splitlines()
    assert "| noisy input | — | — | — | 1.90 | 0.750 | 8.00 | — |" in lines
    assert "| b | 1 | 30 / 40 | yes | 2.40 | 0.800 | 12.00 | yes |" in lines
    assert ("| noisy input (60 utterances) | — | — | 1.80 | 0.740 | 7.50 | — "
            "| — | — | — | — | — | — |") in lines
    chosen = next(line for line in lines if line.endswith("| chosen |"))
    assert "ratio/0.01/shallow" in chosen
    # mean, then per seed (one seed here): computed from the runs
    assert "| 1 | +0.100 | +0.100 | +0.000 |" in chosen
    assert any("ratio/0.03/shallow" in line and "SI-SDR < -0.3 dB" in line
               for line in lines)
    assert any(line.startswith("- b: ratio/0.01/shallow") for line in lines)
    cr = next(line for line in lines if line.startswith("| b | cr |"))
    assert cr.endswith("| yes |") and "[+" in cr
    control = next(line for line in lines
                   if line.startswith("| b | cr_random |"))
    assert control.endswith("| — |")
    # every row of a table has as many cells as its header
    for block in table.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_renderers_are_reachable_from_the_benchmark_module():
    data = _synthetic_data()
    tables = cr_protocol_tables
    assert cr_protocol.markdown_table(data) == tables.markdown_table(data)


def test_backbone_below_the_noisy_input_stops_the_protocol(capsys):
    data = _synthetic_data()
    data["runs"][0]["means"]["estoi"] = 0.7
    with pytest.raises(SystemExit, match="not above the noisy input on "
                       r"validation \(estoi\)"):
        analysis.check_backbones(data, [1], ["b"], strict=True)
    analysis.check_backbones(data, [1], ["b"], strict=False)
    assert "warning (smoke run)" in capsys.readouterr().out


def test_forks_warm_start_and_score_the_right_split(tmp_path, monkeypatch):
    calls = []

    def fake_run_recipe(recipe, yaml, overrides, threads):
        out = overrides["output_folder"]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"{overrides['evaluate_on']}_results"
                               ".csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n"
                       "avg,2.0,0.8,10.0\n")
        with open(os.path.join(out, "train_log.txt"), "w") as fout:
            fout.write("epoch: 1, lr: 1e-3 - train loss: 0.5 - valid loss: "
                       "0.4\nepoch: 2, lr: 1e-3 - train loss: 0.4 - valid "
                       "loss: 0.45\n")
        calls.append((yaml, overrides))
        return 1.0

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", fake_run_recipe)
    ssl = {"trained": "/ssl/trained", "random": "/ssl/random"}
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path), ssl, 1,
                                    quick=True)
    job = {"stage": "backbone", "backbone": "spectral_mask", "seed": 1}
    record = protocol.backbone(job)
    assert record["best_epoch"] == 1 and record["epochs"] == 2
    assert calls[-1][1]["evaluate_on"] == "valid"
    assert "init_from" not in calls[-1][1]
    backbone = protocol.folder(job)

    sweep = protocol.fork({**job, "stage": "sweep", "arm": "continued"},
                          "continued", "valid")
    assert sweep["setting"] is None
    yaml, overrides = calls[-1]
    assert yaml == "spectral_mask.yaml" and "cr_weight" not in overrides
    assert overrides["init_from"] == backbone
    assert overrides["evaluate_on"] == "valid"

    setting = "ratio_detached/0.01/deep"
    for arm in cr_protocol.TEST_FORKS:  # fresh seeds, the same backbone
        protocol.fork({**job, "stage": "test", "arm": arm, "seed": 4},
                      setting, "test")
        yaml, overrides = calls[-1]
        assert overrides["seed"] == 4
        assert overrides["init_from"] == backbone
        assert overrides["evaluate_on"] == "test"
        assert overrides["number_of_epochs"] == 1
        if arm == "continued":
            assert yaml == "spectral_mask.yaml"
            continue
        assert overrides["cr_form"] == "ratio_detached"
        assert overrides["cr_weight"] == 0.01
        assert overrides["cr_layer_weights"] == [4.0, 8.0, 16.0, 32.0]
        space = "random" if arm == "cr_random" else "trained"
        assert overrides["ssl_source"] == ssl[space]
        assert (overrides.get("reference_model") == backbone) == (
            arm.startswith("ccr"))
    ids = {cr_protocol.job_id({**job, "stage": "test", "arm": arm})
           for arm in cr_protocol.TEST_FORKS}
    assert len(ids) == len(cr_protocol.TEST_FORKS)


def test_test_seeds_must_be_fresh():
    with pytest.raises(SystemExit):
        cr_protocol.parse_args(["--quick", "--sweep_seeds", "1",
                                "--test_seeds", "1"])


def test_backbone_archive_restores_on_a_fresh_machine(tmp_path, monkeypatch):
    """A trained backbone is archived; with its folder gone, the forks'
    backbone is restored from the archive (no training) and loads as the
    original, weights and YAML."""
    import shutil

    import torch

    from benchmarks.cr_vs_baseline import SIZES  # the CPU sizes
    from benchmarks.paired import ResumableRuns
    from benchmarks.run_archive import file_sha256
    from lobes.runs import load_trained_run

    trained = []

    def real_tiny_run(recipe, yaml, overrides, threads):
        """A real enhancement run folder: the recipe's YAML, a checkpoint
        of a tiny enhancer, and the results the protocol reads."""
        from speechbrain.utils.checkpoints import Checkpointer

        from lobes.overrides import load_hparams
        from lobes.recipe import resolved_experiment

        out = overrides["output_folder"]
        os.makedirs(out, exist_ok=True)
        sizes = {k: v for k, v in SIZES["spectral_mask"].items()
                 if k != "lr"}
        path = os.path.join(cr_protocol_jobs.RECIPE, "hparams", yaml)
        hparams = load_hparams(path, {**sizes, "output_folder": out})
        model = hparams["modules"]["enhance_model"]
        with torch.no_grad():  # weights of "training"
            for param in model.parameters():
                param.add_(0.01 * len(trained))
        trained.append(yaml)
        with open(os.path.join(out, "hyperparams.yaml"), "w") as fout:
            fout.write(resolved_experiment(
                path, {**sizes, "output_folder": out}))
        Checkpointer(os.path.join(out, "save"),
                     {"enhance_model": model}).save_checkpoint(
                         meta={"loss": 0.4})
        with open(os.path.join(out, "valid_results.csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n")
        with open(os.path.join(out, "train_log.txt"), "w") as fout:
            fout.write("epoch: 1, lr: 1e-3 - train loss: 0.5 - valid "
                       "loss: 0.4\n")
        return 1.0

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", real_tiny_run)
    models = tmp_path / "models"
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path / "w"),
                                    {}, 1, quick=True, models=str(models))
    job = {"stage": "backbone", "backbone": "spectral_mask", "seed": 1}
    record = protocol.backbone(job)
    assert os.path.isfile(protocol.archive(job))
    assert len(record["archive"]["sha256"]) == 64
    original = load_trained_run(protocol.folder(job), ["enhance_model"])
    runs = ResumableRuns(str(tmp_path / "r.json"), {})
    record["archive"]["file"] = os.path.relpath(protocol.archive(job),
                                                cr_protocol_jobs.REPO)
    runs.add(record)

    shutil.rmtree(tmp_path / "w")  # a fresh machine
    fork = {**job, "stage": "sweep", "arm": "continued"}
    cr_protocol.rebuild_backbones(protocol, runs, [fork], 1)
    assert trained == ["spectral_mask.yaml"]  # restored, not trained again
    again = load_trained_run(protocol.folder(job), ["enhance_model"])
    for (name, a), (_, b) in zip(
            original.modules["enhance_model"].state_dict().items(),
            again.modules["enhance_model"].state_dict().items()):
        assert torch.equal(a, b), name

    # an archive that is not the recorded one is not used: the backbone
    # is trained again, and checked against its recorded scores
    shutil.rmtree(tmp_path / "w")
    runs.runs[0]["archive"]["sha256"] = "0" * 64
    cr_protocol.rebuild_backbones(protocol, runs, [fork], 1)
    assert len(trained) == 2
    assert [r["id"] for r in runs.data["rebuilt"]] == [record["id"]]
    assert runs.runs[0]["archive"]["sha256"] == file_sha256(
        protocol.archive(job))  # the new archive is the recorded one


def _fake_run(calls, fail_once=()):
    """A recipe run that writes what the protocol reads; it stops midway
    (raises) the first time it runs a folder named in ``fail_once``,
    leaving a partial log, as a run stopped by a session's end."""
    failed = set()

    def run(recipe, yaml, overrides, threads):
        out = overrides["output_folder"]
        calls.append((out, sorted(os.listdir(out))))
        with open(os.path.join(out, "train_log.txt"), "a") as fout:
            fout.write("epoch: 1, lr: 1e-3 - train loss: 0.5 - valid "
                       "loss: 0.4\n")
        if out in fail_once and out not in failed:
            failed.add(out)
            raise RuntimeError("stopped")
        with open(os.path.join(out, f"{overrides['evaluate_on']}_results"
                               ".csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n")
        return 1.0

    return run


def test_a_run_stopped_midway_resumes_only_as_itself(tmp_path,
                                                      monkeypatch):
    calls = []
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path), {}, 1,
                                    quick=True)
    job = {"stage": "backbone", "backbone": "spectral_mask", "seed": 1}
    folder = protocol.folder(job)
    monkeypatch.setattr(cr_protocol_jobs, "run_recipe",
                        _fake_run(calls, fail_once={folder}))
    monkeypatch.setattr(cr_protocol_jobs.provenance, "code_identity",
                        lambda: "code1")
    with pytest.raises(RuntimeError):
        protocol.backbone(job)
    assert calls[-1] == (folder, ["benchmark_run.json"])  # a fresh folder
    record = protocol.backbone(job)  # restarted: the same run, resumed
    assert "train_log.txt" in calls[-1][1]
    assert record["resumed"] and record["epochs"] == 2

    # other code, or uncommitted changes: the run starts afresh
    for identity in ("code2", None):
        monkeypatch.setattr(cr_protocol_jobs.provenance, "code_identity",
                            lambda identity=identity: identity)
        record = protocol.backbone(job)
        assert calls[-1] == (folder, ["benchmark_run.json"])
        assert "resumed" not in record and record["epochs"] == 1
    # other overrides: afresh
    monkeypatch.setattr(cr_protocol_jobs.provenance, "code_identity",
                        lambda: "code2")
    protocol.setup = {**protocol.setup, "backbone_epochs": 3}
    protocol.backbone(job)
    assert calls[-1] == (folder, ["benchmark_run.json"])


def test_runs_share_the_jobs_slots_across_threads(tmp_path, monkeypatch):
    import threading
    import time

    running, most = [0], [0]
    lock = threading.Lock()
    inner = _fake_run([])

    def run(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return inner(*args)

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", run)
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path), {}, 1,
                                    quick=True, jobs=2)
    threads = [threading.Thread(target=protocol.backbone, args=(
        {"stage": "backbone", "backbone": b, "seed": s},))
        for b in ("spectral_mask", "convtasnet") for s in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2
    assert len(os.listdir(tmp_path / "backbone" / "convtasnet")) == 3


def test_code_identity_follows_the_code_a_run_imports(tmp_path, monkeypatch):
    import subprocess

    from benchmarks import provenance

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], cwd=tmp_path, check=True,
                       capture_output=True)

    def write(path, text):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    git("init", "-q")
    write("lobes/model.py", "x = 1\n")
    write("recipes/R/hparams/a.yaml", "a: 1\n")
    write("recipes/R/README.md", "text\n")
    git("add", ".")
    git("commit", "-qm", "one")
    monkeypatch.setattr(provenance, "REPO", str(tmp_path))
    first = provenance.code_identity()
    assert first is not None

    write("recipes/R/README.md", "more text\n")  # documentation: the same
    write("benchmarks/results/x.json", "{}\n")
    assert provenance.code_identity() == first
    git("commit", "-qam", "docs")
    assert provenance.code_identity() == first

    write("recipes/R/hparams/a.yaml", "a: 2\n")  # uncommitted code: None
    assert provenance.code_identity() is None
    git("commit", "-qam", "code")
    assert provenance.code_identity() not in (None, first)


def test_a_backbone_at_the_recipe_size_runs_the_same_yamls(tmp_path,
                                                           monkeypatch):
    calls = []
    inner = _fake_run([])

    def run(recipe, yaml, overrides, threads):
        calls.append((yaml, overrides))
        return inner(recipe, yaml, overrides, threads)

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", run)
    ssl = {"trained": "/ssl/trained", "random": "/ssl/random"}
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path), ssl, 1,
                                    quick=True)
    job = {"stage": "backbone", "backbone": "spectral_mask_full", "seed": 1}
    protocol.backbone(job)
    protocol.fork({**job, "stage": "sweep", "arm": "ratio/0.01/shallow"},
                  "ratio/0.01/shallow", "valid")
    protocol.fork({**job, "stage": "test", "arm": "ccr_quality"},
                  "ratio/0.01/shallow", "test")
    assert [yaml for yaml, _ in calls] == [
        "spectral_mask.yaml", "cr_wavlm_spectral_mask.yaml",
        "ccr_hubert_spectral_mask.yaml"]
    sizes = set(cr_protocol_jobs.SIZES["spectral_mask"]) - {"lr"}
    assert not sizes & set(calls[0][1])  # the recipe's own sizes
    assert calls[1][1]["output_folder"].endswith(
        "sweep/spectral_mask_full/seed1/ratio_0.01_shallow")


def test_a_results_file_gains_a_backbone_but_keeps_its_runs(tmp_path):
    from benchmarks.paired import ResumableRuns

    path = str(tmp_path / "r.json")
    old = {"epochs": 40, "backbones": ["a"], "sizes": {"a": {"n": 1}}}
    ResumableRuns(path, old).add({"id": "backbone/a/seed1"})
    new = {"epochs": 40, "backbones": ["b"], "sizes": {"b": {}}}
    runs = ResumableRuns(path, new, merge=cr_protocol.merged_setup)
    assert runs.done() == {"backbone/a/seed1"}
    assert runs.data["setup"]["backbones"] == ["a", "b"]
    runs.save()
    for other in ({**new, "sizes": {"a": {"n": 2}}}, {**new, "epochs": 41}):
        with pytest.raises(SystemExit, match="another setup"):
            ResumableRuns(path, other, merge=cr_protocol.merged_setup)
    with pytest.raises(SystemExit, match="another setup"):
        ResumableRuns(path, new)  # no merge rule: equal setups only


def test_a_backbone_trains_in_rounds_until_it_stops_improving(tmp_path,
                                                               monkeypatch):
    budgets = []

    def run(recipe, yaml, overrides, threads):
        """Continues the folder's log to the budget; the validation loss
        is lowest at epoch 5."""
        out = overrides["output_folder"]
        log = os.path.join(out, "train_log.txt")
        done = len(open(log).readlines()) if os.path.isfile(log) else 0
        budgets.append((done, overrides["number_of_epochs"]))
        with open(log, "a") as fout:
            for epoch in range(done + 1, overrides["number_of_epochs"] + 1):
                fout.write(f"epoch: {epoch}, lr: 1e-3 - train loss: 1 - "
                           f"valid loss: {1 + (epoch - 5) ** 2}\n")
        with open(os.path.join(out, "valid_results.csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n")
        time.sleep(0.05)
        return 0.05

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", run)
    monkeypatch.setattr(cr_protocol_jobs.provenance, "code_identity",
                        lambda: "code1")
    setup = {**cr_protocol.QUICK, "max_backbone_epochs": 10, "patience": 1}
    protocol = cr_protocol.Protocol(setup, str(tmp_path), {}, 1, quick=True)
    job = {"stage": "backbone", "backbone": "spectral_mask", "seed": 1}
    record = protocol.backbone(job)
    # rounds of 2 epochs, each continuing the last, until epoch 5 is
    # patience (1) epochs before the round's end
    assert budgets == [(0, 2), (2, 4), (4, 6)]
    assert record["best_epoch"] == 5 and record["epochs"] == 6
    assert record["plateaued"] and record["rounds"] == 3
    first_wall = record["wall_seconds"]  # every round's
    assert 0.15 <= first_wall < 1.0

    # stopped in its third round: restarted, it goes on in that round
    budgets.clear()
    with open(os.path.join(protocol.folder(job), "train_log.txt")) as fin:
        lines = fin.readlines()[:5]
    with open(os.path.join(protocol.folder(job), "train_log.txt"),
              "w") as fout:
        fout.writelines(lines)
    record = protocol.backbone(job)
    assert record["epochs"] == 6 and budgets == [(5, 6)]
    # its cost: the first start's rounds and the restart's
    assert record["wall_seconds"] >= first_wall + 0.05

    # the budget's cap stops a backbone that is still improving
    budgets.clear()
    protocol.setup = {**setup, "max_backbone_epochs": 3}
    record = protocol.backbone({**job, "seed": 2})
    assert budgets == [(0, 2), (2, 3)]
    assert not record["plateaued"] and record["epochs"] == 3


def test_an_unfinished_backbone_goes_on_on_another_machine(tmp_path,
                                                           monkeypatch):
    import shutil

    from tests.unit.fake_runs import run_stopped_once

    seen = []  # the first start stops after two of its epochs (Ctrl-C)
    run = run_stopped_once(seen, 2,
                           lambda overrides: overrides["number_of_epochs"],
                           valid_loss=lambda epoch: 1 / epoch)

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", run)
    monkeypatch.setattr(cr_protocol_jobs, "archive_run",
                        lambda folder, path, modules: "0" * 64)
    monkeypatch.setattr(cr_protocol_jobs.provenance, "code_identity",
                        lambda: "code")
    setup = {**cr_protocol.QUICK, "backbone_epochs": 4}
    models = tmp_path / "models"
    protocol = cr_protocol.Protocol(setup, str(tmp_path / "w"), {}, 1,
                                    quick=True, models=str(models))
    job = {"stage": "backbone", "backbone": "convtasnet", "seed": 1}
    with pytest.raises(KeyboardInterrupt):
        protocol.backbone(job)
    kept = protocol.archive_unfinished([job])
    assert kept == [str(models / "backbone_convtasnet_seed1.unfinished"
                               ".safetensors")]

    shutil.rmtree(tmp_path / "w")  # a fresh machine
    record = protocol.backbone(job)
    assert seen == [0, 2]  # went on from its second epoch
    assert record["resumed"] and record["epochs"] == 4
    assert not os.path.exists(kept[0])  # finished: archived as a backbone
    with open(os.path.join(protocol.folder(job), "save", "CKPT+2",
                           "net.ckpt"), "rb") as fin:
        assert fin.read() == bytes([2])


def test_a_backbone_continued_in_rounds_is_the_one_trained_at_once(
        mini_cache, tmp_path):
    """Real tiny runs of the recipe: a Conv-TasNet trained 2 + 2 epochs
    (the protocol's second round continuing the first) gives the same
    validation losses and scores as one trained 4 epochs at once, so the
    budget changes nothing but where a backbone stops."""
    setup = {**cr_protocol.QUICK, "patience": 10, "backbone_epochs": 2,
             "max_backbone_epochs": 4}
    job = {"stage": "backbone", "backbone": "convtasnet", "seed": 1}
    rounds = cr_protocol.Protocol(setup, str(tmp_path / "rounds"), {}, 1,
                                  quick=True).backbone(job)
    once = cr_protocol.Protocol({**setup, "backbone_epochs": 4},
                                str(tmp_path / "once"), {}, 1,
                                quick=True).backbone(job)
    assert (rounds["rounds"], once["rounds"]) == (2, 1)
    assert len(once["valid_losses"]) == 4
    assert rounds["valid_losses"] == once["valid_losses"]
    assert rounds["items"] == once["items"]


def test_a_reserved_backbone_goes_before_forks_that_asked_first(
        tmp_path, monkeypatch):
    import threading
    import time

    order = []
    inner = _fake_run([])

    def run(recipe, yaml, overrides, threads):
        order.append(overrides["output_folder"].split("/w/")[1])
        return inner(recipe, yaml, overrides, threads)

    monkeypatch.setattr(cr_protocol_jobs, "run_recipe", run)
    protocol = cr_protocol.Protocol(cr_protocol.QUICK, str(tmp_path / "w"),
                                    {}, 1, quick=True, jobs=1)
    backbone = {"stage": "backbone", "backbone": "spectral_mask", "seed": 1}
    fork = {"stage": "sweep", "backbone": "convtasnet", "seed": 1,
            "arm": "continued"}
    protocol.reserve(backbone)  # as main does before the pipelines start
    os.makedirs(protocol.folder({**fork, "stage": "backbone"}))
    first = threading.Thread(target=protocol.fork,
                             args=(fork, "continued", "valid"))
    first.start()
    time.sleep(0.1)
    assert order == []  # the one slot is free, but kept for the backbone
    protocol.backbone(backbone)
    first.join()
    assert order == ["backbone/spectral_mask/seed1",
                     "sweep/convtasnet/seed1/continued"]
