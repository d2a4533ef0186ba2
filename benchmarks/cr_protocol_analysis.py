"""The CR protocol's analysis: the validation choice, paired effects, tables.

Pure functions of the results JSON of :mod:`benchmarks.cr_protocol` (the
protocol is in its docstring and in ``recipes/Voicebank/enhance/README.md``,
"Protocol"): :func:`choose_setting` (best validation PESQ among the CR
settings whose SI-SDR is within ``MARGIN_DB`` of the backbone continued
without CR), :func:`summarize_backbones`, :func:`summarize_sweep`,
:func:`summarize_test` (per-utterance paired differences with mixed-model
intervals over utterances and seeds, :mod:`benchmarks.power`) and
:func:`noisy_scores`; the markdown renderers are in
:mod:`benchmarks.cr_protocol_tables`.

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import math
import re
import statistics

import numpy as np

from benchmarks.power import holm, observed_mde, paired_effect

PRIMARY = "pesq"  #: the metric a gain is claimed on
GUARD = "si_sdr"  #: the metric CR must not lose more than MARGIN_DB on
MARGIN_DB = 0.3
SCORES = ("pesq", "estoi", "si_sdr")
#: How far below the noisy input's validation mean a backbone may be and
#: still pass the gate, per score: PESQ and SI-SDR must be above it; eSTOI
#: within 0.01 of it (the masking enhancers at this corpus size improve
#: PESQ and SI-SDR but leave eSTOI where the noisy input has it;
#: recipes/Voicebank/enhance/README.md, protocol step 2)
GATE_MARGINS = {"pesq": 0.0, "estoi": 0.01, "si_sdr": 0.0}
FORMS = ("ratio", "ratio_detached", "feature_match")
WEIGHTS = (0.003, 0.01, 0.03)
#: Layer-weight orders over the four SSL layer groups (shallow first).
ORDERS = {"shallow": [32.0, 16.0, 8.0, 4.0], "deep": [4.0, 8.0, 16.0, 32.0]}
TEST_ARMS = ("continued", "cr", "ccr_quality", "ccr_similarity", "cr_random")

def setting_name(form, weight, order="shallow"):
    """The name of a CR setting in the JSON and the tables.

    Example
    -------
    >>> setting_name("ratio_detached", 0.01), setting_name("ratio", 0.03,
    ...                                                    "deep")
    ('ratio_detached/0.01/shallow', 'ratio/0.03/deep')
    """
    return f"{form}/{weight:g}/{order}"


def parse_setting(name):
    """``(form, weight, order)`` of :func:`setting_name`.

    Example
    -------
    >>> parse_setting("feature_match/0.003/deep")
    ('feature_match', 0.003, 'deep')
    """
    form, weight, order = name.split("/")
    return form, float(weight), order


def choose_setting(deltas, margin=MARGIN_DB):
    """The validation choice: best PESQ, SI-SDR non-inferior.

    Arguments
    ---------
    deltas : dict
        Setting name -> ``{"pesq": d, "si_sdr": d}``: the mean over seeds
        of the setting's validation score minus ``continued``'s (same
        seed).
    margin : float
        SI-SDR may be at most this much (dB) below ``continued``.

    Returns
    -------
    dict
        ``setting`` (the name), ``passed`` (whether it met the margin; when
        none does, the setting of least SI-SDR loss is taken and
        ``passed`` is False), ``excluded`` (names over the margin) and
        ``why`` (one sentence). PESQ differences equal to 0.001 are a
        tie, which goes to the smaller weight, then the better SI-SDR.

    Example
    -------
    >>> choice = choose_setting({
    ...     "ratio/0.03/shallow": {"pesq": 0.20, "si_sdr": -0.8},
    ...     "ratio_detached/0.01/shallow": {"pesq": 0.05, "si_sdr": -0.2},
    ...     "feature_match/0.01/shallow": {"pesq": 0.02, "si_sdr": 0.1}})
    >>> choice["setting"], choice["passed"], choice["excluded"]
    ('ratio_detached/0.01/shallow', True, ['ratio/0.03/shallow'])
    >>> choose_setting({"a/0.03/shallow": {"pesq": 0.1, "si_sdr": 0.0},
    ...                 "a/0.01/shallow": {"pesq": 0.1, "si_sdr": -0.1}}
    ...                )["setting"]
    'a/0.01/shallow'
    >>> choice = choose_setting({"a/1/shallow": {"pesq": 0.1, "si_sdr": -0.5},
    ...                          "b/1/shallow": {"pesq": 0.0, "si_sdr": -0.4}})
    >>> choice["setting"], choice["passed"]
    ('b/1/shallow', False)
    """
    if not deltas:
        raise ValueError("no settings to choose from")
    excluded = sorted(n for n, d in deltas.items()
                      if not d[GUARD] >= -margin)  # NaN: excluded
    eligible = [n for n in sorted(deltas) if n not in excluded]
    if eligible:
        best = max(eligible, key=lambda n: (round(deltas[n][PRIMARY], 3),
                                            -parse_setting(n)[1],
                                            deltas[n][GUARD]))
        why = (f"{best}: best validation PESQ ({deltas[best][PRIMARY]:+.3f} "
               f"vs continued) of the {len(eligible)} settings whose SI-SDR "
               f"is within {margin} dB of continued "
               f"({deltas[best][GUARD]:+.2f} dB)")
        return {"setting": best, "passed": True, "excluded": excluded,
                "why": why}
    best = max(sorted(deltas), key=lambda n: deltas[n][GUARD])
    why = (f"no setting kept SI-SDR within {margin} dB of continued; "
           f"{best} lost least ({deltas[best][GUARD]:+.2f} dB): tested "
           "only as the least harmful, no gain can be claimed")
    return {"setting": best, "passed": False, "excluded": excluded,
            "why": why}


def read_per_utterance(path):
    """``{utterance: {metric: value}}`` of a recipe's results CSV.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.csv")
    >>> _ = open(path, "w").write("snt_id,pesq\\na,2.0\\nb,\\navg,2.0\\n")
    >>> read_per_utterance(path)
    {'a': {'pesq': 2.0}, 'b': {'pesq': nan}}
    """
    with open(path, encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    return {
        row["snt_id"]: {k: float(v) if v not in ("", None) else math.nan
                        for k, v in row.items() if k != "snt_id"}
        for row in rows if row["snt_id"] != "avg"
    }


def valid_losses(train_log):
    """The validation loss of every epoch of a ``train_log.txt``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> _ = open(path, "w").write(
    ...     "epoch: 1, lr: 1e-3 - train loss: 0.5 - valid loss: 0.4\\n"
    ...     "epoch: 2, lr: 1e-3 - train loss: 0.3 - valid loss: 0.45, "
    ...     "valid pesq: 2.1\\n")
    >>> valid_losses(path)
    [0.4, 0.45]
    """
    losses = []
    with open(train_log, encoding="utf-8") as fin:
        for line in fin:
            match = re.search(r"valid loss: ([-\d.e+]+)", line)
            if line.startswith("epoch:") and match:
                losses.append(float(match.group(1)))
    return losses


def mean_scores(items, scores=SCORES):
    """Mean of each score over utterances (NaNs left out).

    Example
    -------
    >>> mean_scores({"a": {"pesq": 2.0}, "b": {"pesq": 3.0}}, ["pesq"])
    {'pesq': 2.5}
    """
    return {s: float(np.nanmean([v.get(s, math.nan) for v in items.values()]))
            for s in scores}


def paired_table(arm, base, score):
    """``[seeds, utterances]`` differences ``arm - base`` on the utterances
    every seed of both has (dicts ``{seed: {utt: {score: value}}}``).

    Example
    -------
    >>> one = {4: {"a": {"pesq": 3.0}, "b": {"pesq": 1.0}}}
    >>> two = {4: {"a": {"pesq": 1.0}, "b": {"pesq": 2.0}, "c": {}}}
    >>> paired_table(one, two, "pesq").tolist()
    [[2.0, -1.0]]
    """
    seeds = sorted(set(arm) & set(base))
    utts = sorted(set.intersection(*(set(arm[s]) & set(base[s])
                                     for s in seeds)))
    return np.asarray([[arm[s][u].get(score, math.nan)
                        - base[s][u].get(score, math.nan) for u in utts]
                       for s in seeds], dtype=float)


def effect_summary(table):
    """Mean, 95 % interval, p and MDE of a paired table (NaN columns out).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> table = (0.2 + rng.normal(0, 0.05, (5, 1)) + rng.normal(0, 0.3, (1, 50))
    ...          + rng.normal(0, 0.1, (5, 50)))
    >>> cell = effect_summary(table)
    >>> bool(cell["low"] > 0), round(cell["mean"], 1)
    (True, 0.2)
    """
    finite = table[:, np.isfinite(table).all(0)] if table.size else table
    if finite.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan,
                "p": math.nan, "mde": math.nan}
    effect = paired_effect(finite, bootstrap=0)
    usable = math.isfinite(effect.low) and effect.df >= 1
    return {"mean": effect.mean,
            "low": effect.low if usable else math.nan,
            "high": effect.high if usable else math.nan, "p": effect.p,
            "mde": observed_mde(finite) if finite.shape[0] > 1 else math.nan}


def _runs(data, **where):
    return [r for r in data.get("runs", [])
            if all(r.get(k) == v for k, v in where.items())]


def summarize_backbones(data):
    """Per backbone run: validation scores against the noisy input's
    (``above``: past it by :data:`GATE_MARGINS`).

    Example
    -------
    >>> data = {"noisy_valid": {"pesq": 1.5, "estoi": 0.6, "si_sdr": 5.0},
    ...         "runs": [{"stage": "backbone", "backbone": "x", "seed": 1,
    ...                   "means": {"pesq": 2.0, "estoi": 0.595, "si_sdr": 9},
    ...                   "best_epoch": 3, "epochs": 8, "plateaued": True}]}
    >>> summarize_backbones(data)[0]["above_noisy"]
    True
    >>> data["runs"][0]["means"]["pesq"] = 1.5
    >>> summarize_backbones(data)[0]["above"]["pesq"]
    False
    """
    noisy = data.get("noisy_valid") or {}
    rows = []
    for run in _runs(data, stage="backbone"):
        above = {s: bool(run["means"][s]
                         > noisy.get(s, math.inf) - GATE_MARGINS[s])
                 for s in SCORES}
        rows.append({k: run[k] for k in ("backbone", "seed", "best_epoch",
                                         "epochs", "plateaued")}
                    | {"means": run["means"], "above": above,
                       "above_noisy": all(above.values())})
    return sorted(rows, key=lambda r: (r["backbone"], r["seed"]))


def check_backbones(data, seeds, backbones, strict):
    """Stop (or, in a smoke run, warn) unless every backbone of ``seeds``
    is above the noisy input on validation and has stopped improving.

    Example
    -------
    >>> data = {"noisy_valid": {"pesq": 1, "estoi": .5, "si_sdr": 5},
    ...         "runs": [{"stage": "backbone", "backbone": "b", "seed": 1,
    ...                   "means": {"pesq": 2, "estoi": .6, "si_sdr": 4},
    ...                   "best_epoch": 2, "epochs": 2, "plateaued": False}]}
    >>> check_backbones(data, [1], ["b"], strict=True)
    Traceback (most recent call last):
    ...
    SystemExit: error: backbone b seed 1 is not above the noisy input on \
validation (si_sdr) and still improving at epoch 2 of 2; raise \
max_backbone_epochs (benchmarks/cr_protocol_jobs.py) before judging CR on it
    """
    for row in summarize_backbones(data):
        if row["seed"] not in seeds or row["backbone"] not in backbones:
            continue
        problems = []
        if not row["above_noisy"]:
            below = ", ".join(s for s, ok in row["above"].items() if not ok)
            problems.append(f"not above the noisy input on validation "
                            f"({below})")
        if not row["plateaued"]:
            problems.append(f"still improving at epoch {row['best_epoch']} "
                            f"of {row['epochs']}")
        if problems:
            fix = ("more epochs will not help; use a larger backbone or "
                   "more training data (BACKBONES in "
                   "benchmarks/cr_protocol_jobs.py)" if row["plateaued"]
                   else "raise max_backbone_epochs "
                   "(benchmarks/cr_protocol_jobs.py)")
            line = (f"backbone {row['backbone']} seed {row['seed']} is "
                    f"{' and '.join(problems)}; {fix} before judging CR on "
                    "it")
            if strict:
                raise SystemExit(f"error: {line}")
            print(f"warning (smoke run): {line}", flush=True)


def summarize_sweep(data, margin=MARGIN_DB):
    """Per backbone: each setting's mean paired validation difference to
    ``continued`` over the seeds both have, and the choice.

    Example
    -------
    >>> runs = [{"stage": "sweep", "backbone": "x", "seed": s, "arm": arm,
    ...          "means": {"pesq": p, "estoi": 0.7, "si_sdr": 9.0},
    ...          "train": {}}
    ...         for s in (1, 2) for arm, p in (("continued", 2.0),
    ...                                        ("ratio/0.01/shallow", 2.1))]
    >>> sweep = summarize_sweep({"runs": runs})
    >>> sweep["x"]["choice"]["setting"], sweep["x"]["seeds"]
    ('ratio/0.01/shallow', [1, 2])
    >>> [round(d, 3) for d in
    ...  sweep["x"]["settings"]["ratio/0.01/shallow"]["pesq_by_seed"]]
    [0.1, 0.1]

    No choice before every form x weight of the setup has every seed:

    >>> setup = {"training": {"sweep_seeds": [1, 2, 3], "forms": ["ratio"],
    ...                       "weights": [0.01]}}
    >>> "choice" in summarize_sweep({"runs": runs, "setup": setup})["x"]
    False
    """
    out = {}
    for backbone in sorted({r["backbone"] for r in _runs(data,
                                                         stage="sweep")}):
        runs = _runs(data, stage="sweep", backbone=backbone)
        base = {r["seed"]: r for r in runs if r["arm"] == "continued"}
        settings = {}
        for name in sorted({r["arm"] for r in runs} - {"continued"}):
            mine = {r["seed"]: r for r in runs if r["arm"] == name
                    and r["seed"] in base}
            if not mine:
                continue
            row = {"seeds": sorted(mine)}
            for score in SCORES:
                diffs = [mine[s]["means"][score] - base[s]["means"][score]
                         for s in row["seeds"]]
                row[score] = statistics.fmean(diffs)
                row[f"worst_{score}"] = min(diffs)
                row[f"{score}_by_seed"] = diffs
            for key in ("cr", "cr_grad_ratio", "cr_grad_cosine"):
                values = [mine[s]["train"].get(key, math.nan) for s in mine]
                row[key] = float(np.nanmean(values)) if any(
                    math.isfinite(v) for v in values) else math.nan
            settings[name] = row
        out[backbone] = {"seeds": sorted(base), "settings": settings,
                         "continued": {s: base[s]["means"]
                                       for s in sorted(base)}}
        if settings and _grid_done(data, settings):
            out[backbone]["choice"] = choose_setting(settings, margin)
    return out


def _grid_done(data, settings):
    """Whether every form x weight of the file's setup has every sweep
    seed (a file without its setup: whatever is there)."""
    training = (data.get("setup") or {}).get("training")
    if not training:
        return True
    seeds = sorted(training["sweep_seeds"])
    return all(settings.get(setting_name(f, w), {}).get("seeds") == seeds
               for f in training["forms"] for w in training["weights"])


def summarize_test(data, margin=MARGIN_DB):
    """Per backbone and arm: test means and paired effects.

    Each arm is compared with ``continued`` (and the CR arms with
    ``cr_random``) on per-utterance differences, seeds x utterances
    (:func:`effect_summary`). Holm adjusts the PESQ p-values of the CR
    arms (not the control) against ``continued`` over both backbones. An
    arm's gain is ``claimed`` when its PESQ interval against ``continued``
    is above zero with a Holm-adjusted p below 0.05, its PESQ interval
    against ``cr_random`` is above zero, and its SI-SDR interval's low end
    against ``continued`` is above ``-margin``. Nothing is claimed for a
    backbone before each of its arms has every test seed of the file's
    setup (the rule is read on the whole design, not on part of it).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> def items(shift):
    ...     return {f"u{i}": {"pesq": 2 + shift + rng.normal(0, .1),
    ...                       "estoi": .8, "si_sdr": 10 + rng.normal(0, .1)}
    ...             for i in range(40)}
    >>> runs = [{"stage": "test", "backbone": "x", "seed": s, "arm": arm,
    ...          "items": items(shift)} for s in (4, 5, 6)
    ...         for arm, shift in (("continued", 0), ("cr", .3),
    ...                            ("cr_random", 0))]
    >>> row = summarize_test({"runs": runs})["x"]["cr"]
    >>> row["claimed"], bool(row["vs_random"]["pesq"]["low"] > 0)
    (True, True)
    >>> setup = {"training": {"test_seeds": [4, 5, 6, 7, 8]}}
    >>> "claimed" in summarize_test({"runs": runs, "setup": setup})["x"]["cr"]
    False
    """
    out = {}
    for backbone in sorted({r["backbone"] for r in _runs(data,
                                                         stage="test")}):
        runs = _runs(data, stage="test", backbone=backbone)
        arms = {arm: {r["seed"]: r["items"] for r in runs
                      if r["arm"] == arm} for arm in TEST_ARMS}
        rows = {}
        for arm, by_seed in arms.items():
            if not by_seed:
                continue
            items = {f"{s}/{u}": v for s, its in by_seed.items()
                     for u, v in its.items()}
            row = {"seeds": sorted(by_seed), "means": mean_scores(items)}
            if arm != "continued" and arms["continued"]:
                row["vs_continued"] = {
                    s: effect_summary(paired_table(by_seed,
                                                   arms["continued"], s))
                    for s in SCORES}
            if arm not in ("continued", "cr_random") and arms["cr_random"]:
                row["vs_random"] = {
                    s: effect_summary(paired_table(by_seed, arms["cr_random"],
                                                   s))
                    for s in SCORES}
            rows[arm] = row
        out[backbone] = rows
    primary = [(b, a) for b, rows in out.items() for a, row in rows.items()
               if "vs_continued" in row and a != "cr_random"]
    adjusted = holm([out[b][a]["vs_continued"][PRIMARY]["p"]
                     for b, a in primary]) if primary else []
    seeds = ((data.get("setup") or {}).get("training") or {}).get(
        "test_seeds")
    complete = {backbone: seeds is None or (
        set(rows) == set(TEST_ARMS)
        and all(row["seeds"] == sorted(seeds) for row in rows.values()))
        for backbone, rows in out.items()}
    for (backbone, arm), p in zip(primary, adjusted):
        row = out[backbone][arm]
        row["holm_p"] = p
        if "vs_random" in row and complete[backbone]:
            row["claimed"] = bool(
                row["vs_continued"][PRIMARY]["low"] > 0 and p < 0.05
                and row["vs_random"][PRIMARY]["low"] > 0
                and row["vs_continued"][GUARD]["low"] > -margin)
    return out


def noisy_scores(manifest, sample_rate=16000, scores=SCORES):
    """Per-utterance scores of the noisy input itself (a manifest's
    ``noisy_wav`` against its ``clean_wav``), as the recipe scores.

    Example
    -------
    >>> import csv, os, tempfile, torch
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> clean = torch.sin(torch.arange(16000) / 5.0) * 0.3
    >>> for name, sig in (("c", clean), ("n", clean + 0.05 *
    ...                                    torch.randn(16000))):
    ...     write_audio(os.path.join(folder, f"{name}.wav"), sig, 16000)
    >>> path = os.path.join(folder, "valid.csv")
    >>> with open(path, "w", newline="") as fout:
    ...     _ = fout.write("ID,noisy_wav,clean_wav\\n"
    ...                    f"u,{folder}/n.wav,{folder}/c.wav\\n")
    >>> items = noisy_scores(path, scores=["si_sdr"])
    >>> 10 < items["u"]["si_sdr"] < 20
    True
    """
    import csv

    from lobes.data.audio import read_audio
    from lobes.metrics import enhancement_metrics

    items = {}
    with open(manifest, encoding="utf-8") as fin:
        for row in csv.DictReader(fin):
            noisy = read_audio(row["noisy_wav"], sample_rate=sample_rate)
            clean = read_audio(row["clean_wav"], sample_rate=sample_rate)
            items[row["ID"]] = enhancement_metrics(
                noisy, clean, sample_rate, metrics=list(scores))
    return items
