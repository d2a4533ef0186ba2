"""What the NASS benchmark's stages run on, and the checks between them.

The corpora (:func:`louder_noise_corpus`: mini WHAM! with louder noise;
:func:`validation_view`: a WHAM! root whose test split is the validation
split), the keys of the runs (:func:`backbone_id`, :func:`job_id`), and
the checks that a test stage follows a validation stage with the same
settings whose arms it scores (:func:`check_chosen_on_validation`,
:func:`check_arms_trained`); :func:`widen_arms` lets a results file take
arms added later.

Authors
 * noise-robust-sb contributors 2025
"""

import os

from benchmarks.paired import dumps_results, portable

#: Setup keys the test stage may set differently from the validation
#: stage it follows: the stage, and the size of the wider test split.
TEST_STAGE_KEYS = ("stage", "test_mixtures")


def louder_noise_corpus(source, target, gain_db):
    """Copy a WHAM! ``wav8k/min`` tree with the noise ``gain_db`` louder.

    Speakers are kept; ``mix_both = s1 + s2 + louder noise`` (one common
    factor keeps every mixture below 0.99 in peak, so that it stays the sum
    of its parts); float wavs. Done once per target (a marker file).

    Returns
    -------
    str
        ``target`` (a WHAM! root for ``--data_folder``).
    """
    import numpy as np
    import soundfile as sf

    marker = os.path.join(target, ".complete")
    if os.path.isfile(marker):
        return target
    gain = 10 ** (gain_db / 20)
    for split in ("tr", "cv", "tt"):
        src = os.path.join(source, "wav8k", "min", split)
        dst = os.path.join(target, "wav8k", "min", split)
        for folder in ("s1", "s2", "noise", "mix_both", "mix_clean"):
            os.makedirs(os.path.join(dst, folder), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(src, "s1"))):
            parts = {
                folder: sf.read(os.path.join(src, folder, name))[0]
                for folder in ("s1", "s2", "noise")
            }
            rate = sf.info(os.path.join(src, "s1", name)).samplerate
            parts["noise"] = parts["noise"] * gain
            mix = parts["s1"] + parts["s2"] + parts["noise"]
            scale = min(1.0, 0.99 / max(np.abs(mix).max(), 1e-9))
            out = {k: v * scale for k, v in parts.items()}
            out["mix_both"] = mix * scale
            out["mix_clean"] = (parts["s1"] + parts["s2"]) * scale
            for folder, signal in out.items():
                sf.write(os.path.join(dst, folder, name),
                         signal.astype("float32"), rate, subtype="FLOAT")
    with open(marker, "w", encoding="utf-8") as fout:
        fout.write(f"noise {gain_db:+.1f} dB of {source}\n")
    return target


def validation_view(root, target):
    """A WHAM! root whose test split is the validation split.

    ``<target>/wav8k/min/{tr,cv}`` link to ``root``'s and ``tt`` to its
    ``cv``: a recipe run on it trains and validates as on ``root`` and
    "tests" on the validation mixtures, never reading the test split.

    Example
    -------
    >>> import tempfile
    >>> root, view = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> for split in ("tr", "cv", "tt"):
    ...     os.makedirs(os.path.join(root, "wav8k", "min", split))
    >>> tt = os.path.join(validation_view(root, view), "wav8k", "min", "tt")
    >>> os.path.realpath(tt) == os.path.realpath(
    ...     os.path.join(root, "wav8k", "min", "cv"))
    True
    """
    base = os.path.join(root, "wav8k", "min")
    folder = os.path.join(target, "wav8k", "min")
    os.makedirs(folder, exist_ok=True)
    for split, source in (("tr", "tr"), ("cv", "cv"), ("tt", "cv")):
        link = os.path.join(folder, split)
        want = os.path.abspath(os.path.join(base, source))
        if os.path.islink(link) and os.readlink(link) == want:
            continue
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(want, link)
    return target


def gain_label(gain_db):
    """A folder-safe name of a noise gain.

    Example
    -------
    >>> gain_label(0.0), gain_label(6), gain_label(-3.5)
    ('noise+0dB', 'noise+6dB', 'noise-3.5dB')
    """
    return f"noise{gain_db:+g}dB"


def backbone_id(backbone, seed, gain_db):
    """The key of a phase-1 run (a backbone trained from scratch).

    Example
    -------
    >>> backbone_id("sepformer", 2, 6.0)
    'backbones/noise+6dB/sepformer/seed2'
    """
    return f"backbones/{gain_label(gain_db)}/{backbone}/seed{seed}"


def job_id(job):
    """The key of one phase-2 run (an arm forked from a backbone).

    Example
    -------
    >>> job_id({"stage": "validation", "gain_db": 0, "backbone": "dprnn",
    ...         "arm": "nass", "seed": 1})
    'validation/noise+0dB/dprnn/nass/seed1'
    """
    return (f"{job['stage']}/{gain_label(job['gain_db'])}/"
            f"{job['backbone']}/{job['arm']}/seed{job['seed']}")


def trained_arm(job):
    """The validation-stage job whose trained arm a test-stage job scores.

    Example
    -------
    >>> trained_arm({"stage": "test", "arm": "nass", "seed": 2})["stage"]
    'validation'
    """
    return {**job, "stage": "validation"}


def check_chosen_on_validation(validation_path, setup):
    """Refuse a test stage whose choices were not run on validation first.

    The validation results file must exist and hold the same setup but
    for its stage (noise gain, epochs, fork LR, arms, seeds, sizes).

    Raises
    ------
    SystemExit
        Naming the file or the settings that differ.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "v.json")
    >>> check_chosen_on_validation(path, {"stage": "test", "gain_db": 6})
    Traceback (most recent call last):
    ...
    SystemExit: error: ...v.json: no validation results; ...
    >>> _ = open(path, "w").write(json.dumps(
    ...     {"setup": {"stage": "validation", "gain_db": 0}}))
    >>> check_chosen_on_validation(path, {"stage": "test", "gain_db": 6})
    Traceback (most recent call last):
    ...
    SystemExit: error: ...: validated with other settings (gain_db); ...
    """
    import json

    if not os.path.isfile(validation_path):
        raise SystemExit(
            f"error: {validation_path}: no validation results; run "
            "--stage validation with the same settings first (choices are "
            "made on validation, the test set is scored once, after)"
        )
    with open(validation_path, encoding="utf-8") as fin:
        validated = json.load(fin).get("setup", {})
    differ = sorted(
        key for key in set(validated) | set(setup)
        if key not in TEST_STAGE_KEYS
        and validated.get(key) != setup.get(key)
    )
    if differ:
        raise SystemExit(
            f"error: {validation_path}: validated with other settings "
            f"({', '.join(differ)}); run --stage validation with these "
            "settings first"
        )
    return validated


def widen_arms(path, record):
    """Let a results file take more arms than it was started with.

    When ``path`` holds runs of the same setup but for fewer arms, its
    setup is widened to ``record``'s arms (its runs are kept, the new arms
    run next; an added ``nass_noise_weight`` arm brings its
    ``noise_loss_weight``); any other difference is left for
    :class:`benchmarks.paired.ResumableRuns` to refuse.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> _ = open(path, "w").write(json.dumps({"setup": {"training": {
    ...     "arms": ["backbone"], "seeds": [1]}}, "runs": [{"id": "a"}]}))
    >>> record = {"training": {"arms": ["backbone", "nass"], "seeds": [1]}}
    >>> widen_arms(path, record)
    True
    >>> json.load(open(path))["setup"]["training"]["arms"]
    ['backbone', 'nass']
    >>> widen_arms(path, {"training": {"arms": ["nass"], "seeds": [1]}})
    False
    """
    import json

    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as fin:
        data = json.load(fin)
    old = data.get("setup", {})
    training = dict(old.get("training", {}))
    old_arms = training.get("arms", [])
    new_arms = record["training"]["arms"]
    training["arms"] = new_arms
    if (training.get("noise_loss_weight") is None
            and "noise_loss_weight" in record["training"]):  # its arm is new
        training["noise_loss_weight"] = record["training"][
            "noise_loss_weight"]
    rest = {**old, "training": training}
    if (set(old_arms) >= set(new_arms) or not set(old_arms) <= set(new_arms)
            or rest != portable(record)):
        return False
    data["setup"] = rest
    with open(path, "w", encoding="utf-8") as fout:
        fout.write(dumps_results(data))
    return True


def check_arms_trained(validation_path, jobs):
    """Refuse a test stage whose arms the validation stage has not trained.

    Raises
    ------
    SystemExit
        Naming the results file and the first missing arm.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "v.json")
    >>> _ = open(path, "w").write(json.dumps({"runs": [
    ...     {"id": "validation/noise+0dB/dprnn/nass/seed1"}]}))
    >>> job = {"stage": "test", "gain_db": 0, "backbone": "dprnn",
    ...        "arm": "nass", "seed": 1}
    >>> check_arms_trained(path, [job])
    >>> check_arms_trained(path, [dict(job, seed=2)])
    Traceback (most recent call last):
    ...
    SystemExit: error: ...v.json: 1 arm(s) not trained on validation ...
    """
    import json

    try:
        with open(validation_path, encoding="utf-8") as fin:
            done = {run["id"] for run in json.load(fin).get("runs", [])}
    except OSError:
        done = set()
    missing = [job_id(trained_arm(job)) for job in jobs
               if job_id(trained_arm(job)) not in done]
    if missing:
        raise SystemExit(
            f"error: {validation_path}: {len(missing)} arm(s) not trained "
            f"on validation yet ({missing[0]}); run --stage validation "
            "with the same settings first"
        )


def check_rebuilt(runs, run):
    """Check a backbone trained again (its folder was gone) against its record.

    It must score exactly as recorded, or the arms forked from it would not
    be paired with the recorded arms: refuses otherwise; keeps the
    rebuild's wall time and code in the file's ``rebuilt`` list.

    Example
    -------
    >>> import os, tempfile
    >>> from benchmarks.paired import ResumableRuns
    >>> runs = ResumableRuns(os.path.join(tempfile.mkdtemp(), "r.json"), {})
    >>> runs.add({"id": "backbones/b/seed1", "valid_si-snr_i": 9.25})
    >>> again = {"id": "backbones/b/seed1", "valid_si-snr_i": 9.25,
    ...          "wall_seconds": 1.0, "code": None}
    >>> check_rebuilt(runs, again)
    [backbones/b/seed1] trained again: valid_si-snr_i 9.250000 dB, as recorded
    >>> check_rebuilt(runs, {**again, "valid_si-snr_i": 9.3})
    Traceback (most recent call last):
    SystemExit: error: backbones/b/seed1 trained again scores ...
    """
    recorded = next(old for old in runs.runs if old["id"] == run["id"])
    key = "valid_si-snr_i"
    if run[key] != recorded[key]:
        raise SystemExit(
            f"error: {run['id']} trained again scores {key} {run[key]!r}, "
            f"recorded {recorded[key]!r}: arms forked from it would not be "
            "paired with the recorded arms; run these arms into another "
            "--out"
        )
    runs.note_rebuilt({
        "id": run["id"], key: run[key], "wall_seconds": run["wall_seconds"],
        "code": run["code"],
    })
    print(f"[{run['id']}] trained again: {key} {run[key]:.6f} dB, "
          "as recorded", flush=True)


def parameter_overheads(sizes, recipe):
    """NASS's inference parameters over its backbone's, per backbone of
    ``sizes`` (``{backbone: overrides}``) at that size (``bench``) and at
    the recipe YAML's own (``paper``); ``recipe``: the recipe folder.

    Example
    -------
    >>> from benchmarks.paired import REPO
    >>> recipe = os.path.join(REPO, "recipes", "WHAM", "separation")
    >>> rows = parameter_overheads({"dprnn": {"encoder_channels": 16,
    ...     "num_dual_path_blocks": 1, "lr": 0.001}}, recipe)
    >>> sorted(rows), rows["dprnn_bench"]["overhead"] > 0
    (['dprnn_bench', 'dprnn_paper'], True)
    """
    import torch

    from lobes.models.noise_aware import inference_parameter_count
    from lobes.overrides import load_hparams

    rows = {}
    with torch.random.fork_rng(devices=[]):
        for backbone, size in sizes.items():
            size = {k: v for k, v in size.items() if k != "lr"}
            for size_name, overrides in (("bench", size), ("paper", {})):
                counts = {}
                for stem in (backbone, f"nass_{backbone}"):
                    path = os.path.join(recipe, "hparams", f"{stem}.yaml")
                    experiment = load_hparams(path, dict(overrides))
                    counts[stem] = inference_parameter_count(
                        experiment["separator"]
                    )
                rows[f"{backbone}_{size_name}"] = {
                    "backbone": counts[backbone],
                    "nass": counts[f"nass_{backbone}"],
                    "overhead": counts[f"nass_{backbone}"] - counts[backbone],
                }
    return rows
