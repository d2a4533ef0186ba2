"""The NASS benchmark's analysis: runs read, arms paired, tables.

What :mod:`benchmarks.nass_vs_baseline` does with its runs: each run's
per-mixture scores (``test_results.csv``) and last-epoch training
statistics (``train_log.txt``); every arm minus the backbone continued,
per mixture and seed (:func:`compare`, with :mod:`benchmarks.power`); the
arms' means (:func:`arm_means`); and the tables a results file renders as
(:func:`markdown_table`, for ``python -m benchmarks.report``).

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import json
import math

from benchmarks.nass_precheck import BREAKDOWN_KEYS, precheck_table
from benchmarks.paired import fmt
from benchmarks.power import holm, observed_mde, paired_effect

#: The arm every other arm is compared with.
BASELINE_ARM = "backbone"

#: The order the arms are reported in (the benchmark's ``ARMS``).
ARM_ORDER = ("backbone", "noise_output", "nass", "nass_fixed",
             "nass_noise_weight")

#: Per-mixture columns kept from each run's ``test_results.csv`` (those
#: present; the error breakdown once the recipe writes it).
RESULT_KEYS = ("si-snr_i", "sdr_i", "noise_si-snr", "si-snr_i_oracle",
               "sdr_i_oracle", "noise_si-snr_oracle")
#: Last-epoch training statistics kept from each arm's ``train_log.txt``:
#: NCE and its chance level, NCE's gradient over PIT's on the masked
#: features, and on the separator's parameters NCE's share of the two
#: gradients' norms and their cosine.
TRAIN_KEYS = ("nce", "nce_chance", "nce_grad_ratio", "nce_param_share",
              "nce_pit_cosine")
#: What the comparison reports: metric x noise choice.
COMPARED = ("si-snr_i", "sdr_i")
CHOICES = {"deployed": "", "oracle": "_oracle"}


def read_per_mixture(path, keys=RESULT_KEYS + BREAKDOWN_KEYS):
    """Per-mixture rows of a recipe's ``test_results.csv``.

    Arguments
    ---------
    path : str
        The CSV (``snt_id`` and one column per metric, an ``avg`` row).
    keys : tuple of str
        Columns to keep (those missing in the file are left out).

    Returns
    -------
    dict
        ``{"mixtures": [ids], key: [values]}`` in the file's order, the
        ``avg`` row left out; an empty cell is NaN.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "test_results.csv")
    >>> _ = open(path, "w").write(
    ...     "snt_id,si-snr_i,sdr_i\\na,1.5,2.0\\nb,0.5,\\navg,1.0,2.0\\n")
    >>> read_per_mixture(path)
    {'mixtures': ['a', 'b'], 'si-snr_i': [1.5, 0.5], 'sdr_i': [2.0, nan]}
    """
    with open(path, encoding="utf-8") as fin:
        rows = [row for row in csv.DictReader(fin) if row["snt_id"] != "avg"]
    present = [key for key in keys if rows and key in rows[0]]
    values = {"mixtures": [row["snt_id"] for row in rows]}
    for key in present:
        values[key] = [
            float(row[key]) if row[key] not in ("", None) else math.nan
            for row in rows
        ]
    return values


def with_oracle(values):
    """Give a run without a noise output its ``_oracle`` columns.

    A backbone has no noise output to choose: its oracle value is its
    deployed one. Works on averages and on per-mixture lists.

    Example
    -------
    >>> with_oracle({"si-snr_i": [1.0], "si-snr_i_oracle": [2.0]})
    {'si-snr_i': [1.0], 'si-snr_i_oracle': [2.0]}
    >>> with_oracle({"sdr_i": 3.0})
    {'sdr_i': 3.0, 'sdr_i_oracle': 3.0}
    """
    out = dict(values)
    for key in list(values):
        if key == "mixtures" or key.endswith("_oracle"):
            continue
        if key in ("si-snr_i", "sdr_i", "noise_si-snr"):
            out.setdefault(f"{key}_oracle", values[key])
    return out


#: Decimals of the per-mixture values a results file keeps (dB): 1e-3 dB,
#: far below any effect the design can see, and a file of 50 arms x 360
#: mixtures under 1 MB.
PER_MIXTURE_DECIMALS = 3


def rounded(values, decimals=PER_MIXTURE_DECIMALS):
    """Per-mixture columns rounded as a results file keeps them.

    Example
    -------
    >>> rounded({"mixtures": ["a"], "sdr_i": [1.234567, float("nan")]})
    {'mixtures': ['a'], 'sdr_i': [1.235, nan]}
    """
    return {key: column if key == "mixtures" else
            [round(value, decimals) for value in column]
            for key, column in values.items()}


def pack_results(data):
    """A results file's form of ``data``: each run's mixture list, when
    another run has the same one, as an index into ``mixture_lists``; an
    ``_oracle`` column equal to its deployed one left out (a run with one
    noise choice: :func:`with_oracle` puts it back).

    Example
    -------
    >>> runs = [{"per_mixture": {"mixtures": ["a", "b"], "sdr_i": [1, 2],
    ...                          "sdr_i_oracle": [1, 2]}}] * 2
    >>> packed = pack_results({"runs": runs})
    >>> packed["mixture_lists"], packed["runs"][1]["per_mixture"]
    ([['a', 'b']], {'mixtures': 0, 'sdr_i': [1, 2]})
    >>> unpack_results(packed)["runs"] == runs
    True
    """
    lists, packed_runs = [], []
    for run in data.get("runs", []):
        values = run.get("per_mixture")
        if not isinstance(values, dict) or not isinstance(
                values.get("mixtures"), list):
            packed_runs.append(run)
            continue
        if values["mixtures"] not in lists:
            lists.append(values["mixtures"])
        values = {key: column for key, column in values.items()
                  if not (key.endswith("_oracle")
                          and column == values.get(key[:-len("_oracle")]))}
        values["mixtures"] = lists.index(run["per_mixture"]["mixtures"])
        packed_runs.append({**run, "per_mixture": values})
    return {**data, "runs": packed_runs, "mixture_lists": lists}


def unpack_results(data):
    """The in-memory form of a results file :func:`pack_results` wrote
    (a file written before packing is returned as it is)."""
    lists = data.get("mixture_lists", [])
    runs = []
    for run in data.get("runs", []):
        values = run.get("per_mixture")
        if isinstance(values, dict) and isinstance(values.get("mixtures"),
                                                   int):
            values = with_oracle({**values,
                                  "mixtures": lists[values["mixtures"]]})
            run = {**run, "per_mixture": values}
        runs.append(run)
    out = {key: value for key, value in data.items()
           if key != "mixture_lists"}
    return {**out, "runs": runs}


def repack_results(path, bootstrap=2000):
    """Rewrite a results file of the benchmark packed, its per-mixture
    values rounded (:func:`rounded`), its comparisons and table recomputed
    from them; ``repacked`` records the code that did it.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> run = {"phase": "arm", "stage": "test", "gain_db": 0,
    ...        "backbone": "b", "arm": "backbone", "seed": 1,
    ...        "per_mixture": with_oracle({"mixtures": ["a"],
    ...                                    "sdr_i": [1.23456]})}
    >>> _ = open(path, "w").write(json.dumps({"setup": {}, "runs": [run]}))
    >>> data = repack_results(path, bootstrap=0)
    >>> json.load(open(path))["runs"][0]["per_mixture"]
    {'mixtures': 0, 'sdr_i': [1.235]}
    """
    from benchmarks import provenance
    from benchmarks.paired import ResumableRuns

    with open(path, encoding="utf-8") as fin:
        setup = json.load(fin)["setup"]
    runs = ResumableRuns(path, setup, pack=pack_results,
                         unpack=unpack_results)
    for run in runs.runs:
        if isinstance(run.get("per_mixture"), dict):
            run["per_mixture"] = rounded(run["per_mixture"])
    runs.save(comparisons=compare(runs.runs, bootstrap),
              arms=arm_means(runs.runs),
              repacked={"code": provenance.code_state(),
                        "decimals": PER_MIXTURE_DECIMALS})
    runs.save(table=markdown_table(runs.data))
    return runs.data


def paired_table(arm_run, base_run, key):
    """One seed's per-mixture differences ``arm - base`` by mixture id."""
    arm = dict(zip(arm_run["per_mixture"]["mixtures"],
                   arm_run["per_mixture"].get(key, [])))
    base = dict(zip(base_run["per_mixture"]["mixtures"],
                    base_run["per_mixture"].get(key, [])))
    return {m: arm[m] - base[m] for m in arm if m in base}


def compare(runs, bootstrap=2000):
    """Every arm minus the backbone continued, per-mixture and paired.

    For each noise gain, backbone, arm, metric (SI-SNRi, SDRi) and noise
    choice (deployed, oracle): the seeds both arms ran, the mixtures every
    one of those runs scored (finite values), the table of per-mixture
    differences, its mixed-model interval and p-value, the bootstrap
    interval and the minimum detectable effect (:mod:`benchmarks.power`);
    then Holm's adjustment over all the rows.

    Arguments
    ---------
    runs : list of dict
        Phase-2 records (``phase: arm``, with ``per_mixture``); others are
        ignored.
    bootstrap : int
        Bootstrap draws per comparison.

    Returns
    -------
    list of dict
        One row per comparison, ``p_holm`` included.

    Example
    -------
    >>> def run(arm, seed):
    ...     shift = 0.5 + 0.01 * seed if arm == "nass" else 0.0
    ...     values = [m + shift + 0.1 * seed for m in range(4)]
    ...     return {"phase": "arm", "stage": "validation", "gain_db": 0,
    ...             "backbone": "b", "arm": arm, "seed": seed,
    ...             "per_mixture": with_oracle({"mixtures": list("wxyz"),
    ...                                         "si-snr_i": values,
    ...                                         "sdr_i": values})}
    >>> runs = [run(a, s) for a in ("backbone", "nass") for s in (1, 2, 3)]
    >>> rows = compare(runs, bootstrap=0)
    >>> [(r["metric"], r["choice"], r["seeds"], r["mixtures"]) for r in rows]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('si-snr_i', 'deployed', 3, 4), ('si-snr_i', 'oracle', 3, 4),
     ('sdr_i', 'deployed', 3, 4), ('sdr_i', 'oracle', 3, 4)]
    >>> round(rows[0]["mean"], 2), rows[0]["p_holm"] >= rows[0]["p"]
    (0.52, True)
    """
    arms = [r for r in runs if r.get("phase") == "arm"]
    index = {(r["stage"], r["gain_db"], r["backbone"], r["arm"], r["seed"]):
             r for r in arms}
    groups = sorted({(r["stage"], r["gain_db"], r["backbone"], r["arm"])
                     for r in arms if r["arm"] != BASELINE_ARM},
                    key=lambda g: (str(g[0]), g[1], g[2],
                                   ARM_ORDER.index(g[3])
                                   if g[3] in ARM_ORDER else 99))
    rows = []
    for stage, gain, backbone, arm in groups:
        seeds = sorted(
            seed for (st, g, b, a, seed) in index
            if (st, g, b, a) == (stage, gain, backbone, arm)
            and (stage, gain, backbone, BASELINE_ARM, seed) in index
        )
        for metric in COMPARED:
            for choice, suffix in CHOICES.items():
                key = metric + suffix
                per_seed = [
                    paired_table(index[(stage, gain, backbone, arm, s)],
                                 index[(stage, gain, backbone, BASELINE_ARM,
                                        s)], key)
                    for s in seeds
                ]
                mixtures = sorted(
                    set.intersection(*(set(t) for t in per_seed))
                    if per_seed else set()
                )
                mixtures = [m for m in mixtures
                            if all(math.isfinite(t[m]) for t in per_seed)]
                row = {"stage": stage, "gain_db": gain, "backbone": backbone,
                       "arm": arm, "metric": metric, "choice": choice,
                       "seeds": len(seeds), "mixtures": len(mixtures)}
                if mixtures:
                    table = [[t[m] for m in mixtures] for t in per_seed]
                    effect = paired_effect(table, bootstrap=bootstrap)
                    row.update(
                        mean=effect.mean, se=effect.se, df=effect.df,
                        low=effect.low, high=effect.high, p=effect.p,
                        boot_low=effect.boot_low, boot_high=effect.boot_high,
                        mde=observed_mde(table),
                        **effect.components._asdict(),
                    )
                rows.append(row)
    tested = [row for row in rows if "p" in row]
    for row, adjusted in zip(tested, holm([row["p"] for row in tested])):
        row["p_holm"] = adjusted
    return rows


def arm_means(runs):
    """Per stage, gain, backbone and arm (the benchmark's arm order, an
    arm added later included): the mean over seeds of each average
    (SI-SNRi, SDRi, their oracle, the error breakdown, NCE)."""
    keys = (*RESULT_KEYS, *BREAKDOWN_KEYS, *TRAIN_KEYS, "steps",
            "wall_seconds")
    groups = {}
    for run in runs:
        if run.get("phase") == "arm":
            group = (run["stage"], run["gain_db"], run["backbone"],
                     run["arm"])
            groups.setdefault(group, []).append(run)
    backbones = list(dict.fromkeys(group[2] for group in groups))
    rows = []
    for stage, gain, backbone, arm in sorted(groups, key=lambda g: (
            str(g[0]), g[1], backbones.index(g[2]),
            ARM_ORDER.index(g[3]) if g[3] in ARM_ORDER else 99)):
        mine = groups[(stage, gain, backbone, arm)]
        row = {"stage": stage, "gain_db": gain, "backbone": backbone,
               "arm": arm, "seeds": len(mine)}
        for key in keys:
            values = [r[key] for r in mine
                      if isinstance(r.get(key), (int, float))
                      and math.isfinite(r[key])]
            row[key] = sum(values) / len(values) if values else math.nan
        rows.append(row)
    return rows


def _interval(row):
    """``+0.30 [-0.10, +0.70]`` of a comparison row."""
    if "mean" not in row:
        return "n/a"
    return (f"{fmt(row['mean'], sign=True)} [{fmt(row['low'], sign=True)}, "
            f"{fmt(row['high'], sign=True)}]")


def comparison_table(results):
    """The warm-started comparison (a results file) as markdown."""
    setup = results.get("setup", {})
    training = setup.get("training", {})
    lines = [
        "| backbone | arm | noise choice | seeds × mixtures "
        "| Δ SI-SNRi [95 % CI] | p (Holm) | MDE "
        "| Δ SDRi [95 % CI] | p (Holm) | MDE |",
        "|---|---|---|---|---|---:|---:|---|---:|---:|",
    ]
    rows = {}
    for row in results.get("comparisons", []):
        key = (row["gain_db"], row["backbone"], row["arm"], row["choice"])
        rows.setdefault(key, {})[row["metric"]] = row
    for (_, backbone, arm, choice), metrics in rows.items():
        first = next(iter(metrics.values()))
        cells = []
        for metric in COMPARED:
            row = metrics.get(metric, {})
            cells += [
                _interval(row),
                fmt(row.get("p_holm", math.nan), 3),
                fmt(row.get("mde", math.nan)),
            ]
        lines.append(
            f"| {backbone} | {arm} | {choice} "
            f"| {first['seeds']} × {first['mixtures']} | "
            + " | ".join(cells) + " |"
        )
    means = results.get("arms", [])
    if means:
        lines += [
            "",
            "| backbone | arm | seeds | SI-SNRi | SDRi | SI-SNRi (oracle) "
            "| interference dB | noise dB | artifacts dB | NCE (ln K) "
            "| NCE gradient share (cosine to PIT) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in means:
            nce = share = "—"
            if not math.isnan(row["nce"]):
                nce = f"{row['nce']:.2f} ({row['nce_chance']:.2f})"
            if not math.isnan(row.get("nce_param_share", math.nan)):
                share = (f"{row['nce_param_share']:.2f} "
                         f"({row['nce_pit_cosine']:+.2f})")
            lines.append(
                f"| {row['backbone']} | {row['arm']} | {row['seeds']} "
                f"| {fmt(row['si-snr_i'])} | {fmt(row['sdr_i'])} "
                f"| {fmt(row['si-snr_i_oracle'])} "
                f"| {fmt(row['interference_db'])} | {fmt(row['noise_db'])} "
                f"| {fmt(row['artifact_db'])} | {nce} | {share} |"
            )
    gain = setup.get("gain_db")
    lines += [
        "",
        f"Stage: {setup.get('stage', '?')}; mini WHAM! "
        f"({training.get('corpus_size', '?')}"
        + (f", {setup['test_mixtures']} test mixtures"
           if setup.get("test_mixtures") else "")
        + ") with the noise "
        f"{fmt(gain, 1, sign=True) if gain is not None else '?'} dB; "
        f"backbones {training.get('backbone_epochs', '?')} epochs, then "
        f"{training.get('fork_epochs', '?')} epochs per arm from the "
        "backbone's best validation checkpoint. Δ: arm minus the backbone "
        "continued, per mixture and seed; 95 % intervals from a two-way "
        "random-effects model (seeds × mixtures, Satterthwaite df); p "
        "Holm-adjusted over the rows; MDE: the smallest effect detected "
        "with 80 % power at alpha 0.05 by this design (observed SDs).",
    ]
    return "\n".join(lines)


def markdown_table(results):
    """The table of a results file (``python -m benchmarks.report``).

    A results file of this benchmark renders as :func:`comparison_table`,
    the pre-check's as :func:`benchmarks.nass_precheck.precheck_table`.

    Example
    -------
    >>> print(markdown_table({"setup": {"stage": "test"},
    ...                       "comparisons": []}).splitlines()[0][:40])
    | backbone | arm | noise choice | seeds
    """
    if "noise_precheck" in results and "comparisons" not in results:
        return precheck_table(results)
    return comparison_table(results)
