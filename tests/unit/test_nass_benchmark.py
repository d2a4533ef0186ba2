"""The warm-started NASS benchmark's bookkeeping (no training here):
benchmarks/nass_vs_baseline.py with the recipe replaced by a fake that
writes what a recipe run writes."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf

from benchmarks import nass_analysis, provenance
from benchmarks import nass_vs_baseline as bench
from benchmarks.power import holm

SPLITS = {"tr": 6, "cv": 5, "tt": 4}


def fake_corpus(root):
    """A WHAM! tree with short random wavs: mixtures are sums of parts."""
    rng = np.random.default_rng(0)
    for split, count in SPLITS.items():
        for k in range(count):
            parts = {f: 0.1 * rng.standard_normal(1600)
                     for f in ("s1", "s2", "noise")}
            parts["noise"] *= 0.5 + k  # a range of mixture SNRs
            parts["mix_both"] = parts["s1"] + parts["s2"] + parts["noise"]
            parts["mix_clean"] = parts["s1"] + parts["s2"]
            for folder, signal in parts.items():
                path = os.path.join(root, "wav8k", "min", split, folder)
                os.makedirs(path, exist_ok=True)
                sf.write(os.path.join(path, f"{split}{k}.wav"), signal,
                         8000, subtype="FLOAT")
    return str(root)


#: The fake recipe's effect of each arm (dB, on every mixture).
EFFECT = {"backbone": 0.0, "noise_output": -0.2, "nass": 0.4,
          "nass_fixed": 0.1, "nass_noise_weight": 0.0}


class FakeRecipe:
    """Stands in for benchmarks.paired.run_recipe: writes test_results.csv
    (one row per mixture of the data folder's tt, then avg), train_log.txt
    and save/wham_train.csv, and records every call."""

    def __init__(self):
        self.calls = []
        #: The test stage's data folder (it only scores there).
        self.test_root = None

    def arm_of(self, yaml, overrides):
        if not yaml.startswith("nass_"):
            return "backbone"
        if overrides.get("noise_loss_weight") is not None:
            return "nass_noise_weight"
        if overrides.get("nce_weight") == 0.0:
            return "noise_output"
        if overrides.get("noise_slot") == "fixed":
            return "nass_fixed"
        return "nass"

    def __call__(self, recipe_dir, yaml, overrides, threads=1):
        if "init_from" in overrides:  # phase 2 after phase 1
            assert os.path.isfile(os.path.join(overrides["init_from"],
                                               "test_results.csv"))
        self.calls.append((yaml, dict(overrides)))
        out = overrides["output_folder"]
        os.makedirs(os.path.join(out, "save"), exist_ok=True)
        tt = os.path.join(overrides["data_folder"], "wav8k", "min", "tt",
                          "mix_both")
        names = sorted(os.path.splitext(n)[0] for n in os.listdir(tt))
        nass = yaml.startswith("nass_")
        effect = EFFECT[self.arm_of(yaml, overrides)]
        seed = overrides["seed"]
        columns = ["si-snr_i", "sdr_i", "noise_si-snr"]
        if nass:
            columns += [f"{c}_oracle" for c in columns]
        rows = []
        for k, name in enumerate(names):
            base = 5.0 + k + 0.1 * seed + 0.05 * ((k * seed) % 3)
            # zero-mean over each seed's mixtures (5 validation mixtures)
            jitter = 0.1 * ((k + seed) % 5 - 2) * (effect != 0.0)
            row = {"snt_id": name}
            for column in columns:
                row[column] = base + effect + jitter + (
                    0.3 if column.endswith("_oracle") else 0.0)
            rows.append(row)
        with open(os.path.join(out, "test_results.csv"), "w",
                  encoding="utf-8") as fout:
            fout.write(",".join(["snt_id", *columns]) + "\n")
            for row in rows:
                fout.write(",".join(str(row[c]) for c in
                                    ["snt_id", *columns]) + "\n")
            averages = [str(np.mean([r[c] for r in rows])) for c in columns]
            fout.write(",".join(["avg", *averages]) + "\n")
        if overrides["data_folder"] == self.test_root:  # scores only
            assert os.listdir(os.path.join(out, "save")) == ["CKPT+fake"]
            return 1.0
        with open(os.path.join(out, "train_log.txt"), "w",
                  encoding="utf-8") as fout:
            fout.write(f"epoch: {overrides['number_of_epochs']}, lr: 1e-3 - "
                       f"train loss: -3.0{', train nce: 3.5' if nass else ''}"
                       " - valid loss: -2.0\n")
        os.makedirs(os.path.join(out, "save", "CKPT+fake"), exist_ok=True)
        with open(os.path.join(out, "save", "wham_train.csv"), "w",
                  encoding="utf-8") as fout:
            fout.write("ID\n" + "x\n" * SPLITS["tr"])
        return 1.0


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The benchmark on a fake corpus with the fake recipe."""
    corpus = fake_corpus(tmp_path / "wham")
    recipe = FakeRecipe()
    recipe.test_root = corpus
    monkeypatch.setattr(bench, "run_recipe", recipe)
    import lobes.data.mini_corpora as mini

    monkeypatch.setattr(mini, "ensure_mini_corpus",
                        lambda corpus_name, size, **kw: corpus)
    monkeypatch.setattr(bench, "parameter_overheads", lambda *a: {"x": 1})
    return recipe, corpus, tmp_path


def run_main(tmp_path, *extra):
    out = tmp_path / "results.json"
    argv = ["--quick", "--out", str(out), "--work", str(tmp_path / "runs"),
            "--bootstrap", "200", "--jobs", "1", *extra]
    return bench.main(argv), out


def test_validation_view_tests_on_validation(tmp_path):
    from lobes.data.prepare import prepare_wham

    corpus = fake_corpus(tmp_path / "wham")
    view = bench.validation_view(corpus, str(tmp_path / "view"))
    assert bench.validation_view(corpus, str(tmp_path / "view")) == view
    manifests = prepare_wham(view, str(tmp_path / "save"))
    with open(manifests["test"], encoding="utf-8") as fin:
        text = fin.read()
    assert "cv0" in text and "tt0" not in text


def test_quick_run_pairs_forks_with_their_backbone(fake):
    recipe, corpus, tmp_path = fake
    data, out = run_main(tmp_path, "--seeds", "1", "2", "3",
                         "--fork_lr", "0.0005")
    yamls = [yaml for yaml, _ in recipe.calls]
    # phase 1: a backbone per seed first, then the four arms per seed
    assert yamls[:3] == ["sepformer.yaml"] * 3
    assert len(yamls) == 3 + 3 * 4
    for yaml, overrides in recipe.calls[3:]:
        backbone = os.path.join(str(tmp_path / "runs"), "backbones",
                                "noise+0dB", "sepformer",
                                f"seed{overrides['seed']}")
        assert overrides["init_from"] == backbone
        assert overrides["number_of_epochs"] == bench.QUICK["fork_epochs"]
        assert overrides["lr"] == 0.0005
        # validation stage: the arms' "test" split is the validation split
        assert os.path.realpath(os.path.join(
            overrides["data_folder"], "wav8k", "min", "tt")) == \
            os.path.realpath(os.path.join(corpus, "wav8k", "min", "cv"))
        if yaml.startswith("nass_"):
            assert overrides["nce_num_patches"] == \
                bench.NCE_SIZE["nce_num_patches"]
    for _, overrides in recipe.calls[:3]:  # backbones never see tt
        assert "init_from" not in overrides
        assert os.path.realpath(os.path.join(
            overrides["data_folder"], "wav8k", "min", "tt")).endswith("cv")

    packed = json.loads(out.read_text())
    # the file keeps each mixture list once, and a backbone's oracle
    # columns (its deployed ones) not at all
    assert packed["mixture_lists"] == [[f"cv{k}" for k in range(5)]]
    assert all(r["per_mixture"]["mixtures"] == 0 for r in packed["runs"]
               if "per_mixture" in r)
    assert "si-snr_i_oracle" not in next(
        r for r in packed["runs"] if r.get("arm") == "backbone"
    )["per_mixture"]
    saved = nass_analysis.unpack_results(packed)
    assert set(provenance.REQUIRED) <= set(saved["provenance"])
    arm = next(r for r in saved["runs"] if r.get("arm") == "nass")
    assert arm["per_mixture"]["mixtures"] == [f"cv{k}" for k in range(5)]
    assert len(arm["code"]["commit"]) == 40  # the code each run imported
    assert len(arm["per_mixture"]["si-snr_i_oracle"]) == 5
    base = next(r for r in saved["runs"] if r.get("arm") == "backbone")
    assert base["per_mixture"]["si-snr_i_oracle"] == \
        base["per_mixture"]["si-snr_i"]

    rows = {(r["arm"], r["metric"], r["choice"]): r
            for r in saved["comparisons"]}
    nass = rows[("nass", "si-snr_i", "deployed")]
    assert nass["seeds"] == 3 and nass["mixtures"] == 5
    assert nass["mean"] == pytest.approx(0.4)
    assert rows[("nass", "si-snr_i", "oracle")]["mean"] == pytest.approx(0.7)
    assert rows[("noise_output", "sdr_i", "deployed")]["mean"] == \
        pytest.approx(-0.2)
    assert nass["low"] <= 0.4 <= nass["high"]
    ps = [r["p"] for r in saved["comparisons"]]
    assert [r["p_holm"] for r in saved["comparisons"]] == holm(ps)
    assert len(saved["comparisons"]) == 3 * 2 * 2  # arms x metrics x choices

    table = bench.markdown_table(saved)
    assert "| sepformer | nass | deployed | 3 × 5 | +0.40 [" in table
    assert "Stage: validation" in table
    assert saved["table"] == table


def test_resumed_run_trains_nothing_again(fake):
    recipe, _, tmp_path = fake
    run_main(tmp_path)
    calls = len(recipe.calls)
    run_main(tmp_path)
    assert len(recipe.calls) == calls


def test_finished_backbone_is_reused_not_retrained(fake):
    recipe, _, tmp_path = fake
    run_main(tmp_path)
    first = len(recipe.calls)
    (tmp_path / "results.json").unlink()  # a new results file, same work
    run_main(tmp_path)
    assert [y for y, _ in recipe.calls[first:]].count("sepformer.yaml") == 1


def test_an_arm_added_later_runs_alone_into_the_same_file(fake):
    recipe, _, tmp_path = fake
    run_main(tmp_path, "--arms", "backbone", "nass")
    first = len(recipe.calls)
    data, _ = run_main(tmp_path, "--arms", "backbone", "nass",
                       "nass_noise_weight", "--noise_loss_weight", "0.5")
    added = recipe.calls[first:]
    assert len(added) == 1 and added[0][1]["noise_loss_weight"] == 0.5
    assert {r["arm"] for r in data["runs"] if "arm" in r} == {
        "backbone", "nass", "nass_noise_weight"}
    with pytest.raises(SystemExit, match="another setup"):
        run_main(tmp_path, "--arms", "backbone", "nass", "--fork_epochs", "2")


def test_an_added_arm_trains_a_gone_backbone_again_and_checks_it(fake):
    import shutil

    recipe, _, tmp_path = fake
    run_main(tmp_path, "--arms", "backbone", "nass")
    shutil.rmtree(tmp_path / "runs" / "backbones")  # another machine
    first = len(recipe.calls)
    data, out = run_main(tmp_path, "--arms", "backbone", "nass",
                         "nass_noise_weight", "--noise_loss_weight", "0.5")
    added = [yaml for yaml, _ in recipe.calls[first:]]
    assert added == ["sepformer.yaml", "nass_sepformer.yaml"]
    assert [r["id"] for r in data["rebuilt"]] == [
        "backbones/noise+0dB/sepformer/seed1"]
    assert sum(r.get("phase") == "backbone" for r in data["runs"]) == 1
    # a backbone that does not train again as recorded: no arm from it
    shutil.rmtree(tmp_path / "runs" / "backbones")
    recorded = json.loads(out.read_text())
    for run in recorded["runs"]:
        if run.get("phase") == "backbone":
            run["valid_si-snr_i"] += 0.01
    out.write_text(json.dumps(recorded))
    before = len(recipe.calls)
    with pytest.raises(SystemExit, match="would not be paired"):
        run_main(tmp_path, "--arms", "backbone", "nass", "nass_noise_weight",
                 "nass_fixed", "--noise_loss_weight", "0.5")
    assert [yaml for yaml, _ in recipe.calls[before:]] == ["sepformer.yaml"]


def test_noise_weight_arm_passes_its_weight(fake):
    recipe, _, tmp_path = fake
    run_main(tmp_path, "--arms", "backbone", "nass_noise_weight",
             "--noise_loss_weight", "0.25")
    arm = [o for y, o in recipe.calls if "noise_loss_weight" in o]
    assert len(arm) == 1 and arm[0]["noise_loss_weight"] == 0.25


def test_test_stage_needs_validation_with_the_same_settings(fake):
    _, _, tmp_path = fake
    setup = {"stage": "test", "gain_db": 6.0, "training": {"fork_lr": 1}}
    path = tmp_path / "validation.json"
    with pytest.raises(SystemExit, match="no validation results"):
        bench.check_chosen_on_validation(str(path), setup)
    path.write_text(json.dumps({"setup": dict(setup, stage="validation",
                                               gain_db=0.0)}))
    with pytest.raises(SystemExit, match="gain_db"):
        bench.check_chosen_on_validation(str(path), setup)
    path.write_text(json.dumps({"setup": dict(setup, stage="validation")}))
    assert bench.check_chosen_on_validation(str(path), setup)["gain_db"] == 6


def test_test_stage_scores_the_trained_arms_on_the_test_split(fake):
    recipe, corpus, tmp_path = fake
    validation = tmp_path / "validation.json"
    with pytest.raises(SystemExit, match="not trained on validation"):
        run_main(tmp_path, "--stage", "test", "--validation_out",
                 str(validation))
    run_main(tmp_path, "--out", str(validation))
    trained = len(recipe.calls)
    data, _ = run_main(tmp_path, "--stage", "test", "--validation_out",
                       str(validation))
    tests = recipe.calls[trained:]
    # one scoring run per arm, none trains a backbone, all on the test
    # split, each from its validation-stage arm's checkpoints
    assert len(tests) == len(bench.DEFAULT_ARMS)
    for _, overrides in tests:
        assert overrides["data_folder"] == corpus
        assert "/test/" in overrides["output_folder"]
    nass = next(r for r in data["runs"] if r.get("arm") == "nass")
    assert nass["per_mixture"]["mixtures"][0] == "tt0"
    assert nass["nce"] == 3.5  # the trained arm's training statistics
    assert data["setup"]["test_mixtures"] == bench.QUICK_TEST_MIXTURES
    assert "6 test mixtures" in data["table"]


def test_the_arms_are_reported_in_the_benchmarks_order():
    assert tuple(bench.ARMS) == nass_analysis.ARM_ORDER


def test_compare_drops_unpaired_seeds_and_nan_mixtures():
    def run(arm, seed, values):
        return {"phase": "arm", "stage": "validation", "gain_db": 0.0,
                "backbone": "dprnn", "arm": arm, "seed": seed,
                "per_mixture": bench.with_oracle({
                    "mixtures": ["a", "b", "c"], "si-snr_i": values,
                    "sdr_i": values})}

    runs = [run("backbone", 1, [1.0, 2.0, 3.0]),
            run("nass", 1, [2.0, math.nan, 4.5]),
            run("backbone", 2, [1.0, 2.0, 3.0]),
            run("nass", 2, [1.5, 2.5, 3.0]),
            run("nass", 3, [9.0, 9.0, 9.0])]  # no backbone for seed 3
    row = bench.compare(runs, bootstrap=0)[0]
    assert (row["seeds"], row["mixtures"]) == (2, 2)  # mixture b dropped
    assert row["mean"] == pytest.approx((1.0 + 1.5 + 0.5 + 0.0) / 4)


def test_precheck_breakdown_per_snr_on_a_tiny_separator(tmp_path):
    import torch
    from speechbrain.lobes.models.conv_tasnet import MaskNet
    from speechbrain.lobes.models.dual_path import Decoder, Encoder

    from lobes.models.noise_aware import NoiseAwareSeparator

    corpus = fake_corpus(tmp_path / "wham")
    torch.manual_seed(0)
    separator = NoiseAwareSeparator(
        Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=2),
        Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
        noise_output=False,
    )
    rows = bench.noise_breakdown(separator, corpus, split="cv")
    assert [r["mixture"] for r in rows] == [f"cv{k}" for k in range(5)]
    snrs = [r["snr_db"] for r in rows]
    assert snrs == sorted(snrs, reverse=True)  # louder noise, k by k
    for row in rows:
        assert set(bench.BREAKDOWN_KEYS) <= set(row)
    summary = bench.breakdown_by_snr(rows, width=3.0)
    assert sum(b["mixtures"] for b in summary["bins"]) == 5
    level = {"gain_db": 0.0, "backbone": "convtasnet", "seed": 0,
             "per_mixture": rows, **summary}
    text = bench.markdown_table({"noise_precheck": {
        "levels": [level], "pick_gain_db": bench.pick_noise_gain([level])}})
    assert "| +0.0 | all | 5 |" in text
