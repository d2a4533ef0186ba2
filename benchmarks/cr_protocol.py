#!/usr/bin/env python3
"""CR on enhancers that have learned: chosen on validation, tested once.

The protocol of ``recipes/Voicebank/enhance/README.md`` ("Protocol", issue
22), on the ``small`` mini VoiceBank-DEMAND corpus at the CPU sizes of
:mod:`lobes.cpu_settings`. Every run is the recipe's own ``train.py``.
Primary metric: wide-band PESQ; SI-SDR must stay within ``MARGIN_DB``
(0.3 dB) of the backbone continued without CR. Stages (``--stage`` stops
after one; a later stage runs the earlier ones it needs):

1. ``backbone``: per backbone (spectral mask, Conv-TasNet) and seed, the
   backbone trained from scratch for a stated epoch budget; its best
   checkpoint (lowest validation loss) is the warm-start source. Scored on
   the validation speakers only (``--evaluate_on=valid``), beside the noisy
   input; it must be above the noisy input on PESQ, eSTOI and SI-SDR, and
   its validation loss must have stopped improving (best epoch at least
   ``patience`` epochs before the budget's end), or the protocol stops.
2. ``sweep`` (validation speakers, seeds 1-3): each backbone forked
   (``--init_from``) into fine-tunes of equal steps: ``continued`` (no
   CR) and CR with every form x weight at the default layer-weight order
   (32, 16, 8, 4: shallow groups most), then the reversed order (4, 8, 16,
   32) at the best form x weight. :func:`choose_setting` picks per
   backbone the best validation PESQ among the settings whose SI-SDR is
   not worse than ``continued`` by more than 0.3 dB (paired by seed).
3. ``test`` (fresh seeds 4-8): per seed and backbone, a backbone trained
   as in 1, then forks of equal steps: ``continued``, ``cr`` (the chosen
   setting), ``ccr_quality`` and ``ccr_similarity`` (the chosen form,
   weight and order; the reference negative is the backbone), and
   ``cr_random`` (the chosen CR in the trained SSL model's architecture,
   randomly initialised: the negative control). Scored once on the test
   set. Per-utterance paired differences to ``continued`` and to
   ``cr_random``, with mixed-model intervals over utterances and seeds
   (:mod:`benchmarks.power`); a gain is claimed only when both PESQ
   intervals lie above zero (Holm-adjusted p below 0.05 against
   ``continued``) and SI-SDR is non-inferior (the interval's low end above
   -0.3 dB).

Each backbone's stages run in order, the two backbones' side by side in
the ``--jobs`` slots. Resumable: the JSON is rewritten after every run; a
run already there is not run again, and one stopped midway (Ctrl-C, a
session's end) resumes from its last checkpoint when its overrides and
the code it imports are unchanged::

    python -m benchmarks.cr_protocol --stage sweep
    python -m benchmarks.cr_protocol          # then the test stage
    python -m benchmarks.cr_protocol --quick --out /tmp/cr_protocol.json

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time

from benchmarks import provenance
from benchmarks.cr_protocol_analysis import (
    FORMS,
    MARGIN_DB,
    ORDERS,
    SCORES,
    WEIGHTS,
    check_backbones,
    choose_setting,
    heldout_table,
    markdown_table,
    mean_scores,
    noisy_scores,
    parse_setting,
    read_per_utterance,
    setting_name,
    summarize_backbones,
    summarize_sweep,
    summarize_test,
    sweep_table,
    valid_losses,
)
from benchmarks.cr_vs_baseline import (
    RECIPE,
    SIZES,
    TEST_METRICS,
    TRAINED_SSL,
    recipe_overrides,
    ssl_overrides,
    ssl_weights_sha256,
)
from benchmarks.paired import (
    REPO,
    ResumableRuns,
    last_epoch_stats,
    run_in_phases,
    run_recipe,
    start_or_resume,
    stored_run_state,
)
from benchmarks.run_archive import archive_run, file_sha256, restore_run

# The renderers, for `<!-- table: ... cr_protocol.<name> -->` markers
__all__ = ["heldout_table", "main", "markdown_table", "sweep_table"]

FULL = {
    "corpus_size": "small", "backbone_seed": 1, "backbone_epochs": 40,
    "max_backbone_epochs": 400, "finetune_epochs": 10, "patience": 3,
    "batch_size": 8, "segment_length": 2.0,
    "sweep_seeds": [1, 2, 3], "test_seeds": [4, 5, 6, 7, 8],
    "forms": list(FORMS), "weights": list(WEIGHTS),
}
#: A smoke run: every form at one weight, one seed per stage.
QUICK = {
    "corpus_size": "tiny", "backbone_seed": 1, "backbone_epochs": 2,
    "max_backbone_epochs": 4, "finetune_epochs": 1, "patience": 0,
    "batch_size": 2, "segment_length": 1.0,
    "sweep_seeds": [1], "test_seeds": [4],
    "forms": list(FORMS), "weights": [0.01],
}

#: The test stage's forks: arm -> (YAML stem, extra overrides, SSL space).
TEST_FORKS = {
    "continued": ("{backbone}", {}, None),
    "cr": ("cr_wavlm_{backbone}", {}, "trained"),
    "ccr_quality": ("ccr_hubert_{backbone}", {"curriculum": "quality"},
                    "trained"),
    "ccr_similarity": ("ccr_hubert_{backbone}",
                       {"curriculum": "similarity"}, "trained"),
    "cr_random": ("cr_wavlm_{backbone}", {}, "random"),
}


#: The protocol's backbones: name -> (the recipe's YAML stem, its size
#: overrides). The CPU sizes of :mod:`lobes.cpu_settings`, and the spectral
#: mask at the recipe's own size (4.0 M parameters; at its CPU size of
#: 0.15 M it stopped improving below the noisy input's validation eSTOI).
BACKBONES = {
    "convtasnet": ("convtasnet", SIZES["convtasnet"]),
    "spectral_mask": ("spectral_mask", SIZES["spectral_mask"]),
    "spectral_mask_full": ("spectral_mask", {}),
}
#: What the protocol runs by default.
DEFAULT_BACKBONES = ("convtasnet", "spectral_mask_full")


def backbone_job(setup, backbone):
    """The backbone run that every fork of ``backbone`` warm-starts from.

    Example
    -------
    >>> backbone_job(FULL, "convtasnet")
    {'stage': 'backbone', 'backbone': 'convtasnet', 'seed': 1}
    """
    return {"stage": "backbone", "backbone": backbone,
            "seed": setup["backbone_seed"]}


def merged_setup(old, new):
    """The setup of a results file that gains backbones: ``new`` when it
    differs from ``old`` (the file's) only by backbones added, and in
    none of the backbones that both have (their runs stay valid); else
    None (:class:`benchmarks.paired.ResumableRuns` refuses the file).

    Example
    -------
    >>> old = {"epochs": 2, "backbones": ["a"], "sizes": {"a": {"n": 1}}}
    >>> new = {"epochs": 2, "backbones": ["b"], "sizes": {"b": {}}}
    >>> merged_setup(old, new)["sizes"]
    {'a': {'n': 1}, 'b': {}}
    >>> merged_setup(old, {**new, "sizes": {"a": {"n": 2}}}) is None
    True
    >>> merged_setup(old, {**new, "epochs": 3}) is None
    True
    """
    rest = ("backbones", "sizes")
    if {k: v for k, v in old.items() if k not in rest} != {
            k: v for k, v in new.items() if k not in rest}:
        return None
    if any(old["sizes"][b] != new["sizes"][b]
           for b in set(old["sizes"]) & set(new["sizes"])):
        return None
    sizes = {**old["sizes"], **new["sizes"]}
    return {**new, "backbones": sorted(sizes),
            "sizes": {b: sizes[b] for b in sorted(sizes)}}


def job_id(job):
    """The key of one run in the JSON (and its folder under the work dir).

    Example
    -------
    >>> job_id({"stage": "backbone", "backbone": "convtasnet", "seed": 1})
    'backbone/convtasnet/seed1'
    >>> job_id({"stage": "sweep", "backbone": "convtasnet", "seed": 1,
    ...         "arm": "ratio/0.01/shallow"})
    'sweep/convtasnet/seed1/ratio_0.01_shallow'
    """
    parts = [job["stage"], job["backbone"], f"seed{job['seed']}"]
    if job["stage"] != "backbone":
        parts.append(job["arm"].replace("/", "_"))
    return "/".join(parts)


class Protocol:
    """Runs the recipe for the protocol's jobs; one record per run.

    Arguments
    ---------
    setup : dict
        :data:`FULL` or :data:`QUICK` (possibly changed on the command
        line).
    work : str
        Where the runs' folders go.
    ssl_folders : dict
        ``{"trained": folder, "random": folder}``: CR's SSL spaces.
    threads : int
        CPU threads per run.
    quick : bool
        Smoke run (fewer test metrics).
    models : str, optional
        Where each trained backbone is archived (None: not archived).
    jobs : int
        Recipe runs at a time, over every thread that calls :meth:`backbone`
        or :meth:`fork`.

    Example
    -------
    >>> protocol = Protocol(QUICK, "/tmp/w", {}, 1, True)
    >>> protocol.folder({"stage": "backbone", "backbone": "b", "seed": 4})
    '/tmp/w/backbone/b/seed4'
    """

    def __init__(self, setup, work, ssl_folders, threads, quick,
                 models=None, jobs=1):
        self.setup = setup
        self.work = work
        self.models = models
        self.ssl_folders = ssl_folders
        self.threads = threads
        self.quick = quick
        self.slots = threading.BoundedSemaphore(jobs)
        #: set when the protocol stops: no run starts after it
        self.stopping = threading.Event()

    def folder(self, job):
        """A run's output folder."""
        return os.path.join(self.work, job_id(job))

    def _overrides(self, job, epochs, split, metrics):
        return {
            **BACKBONES[job["backbone"]][1],
            **recipe_overrides({**self.setup, "epochs": epochs},
                               job["seed"], self.folder(job), self.quick),
            "evaluate_on": split, "test_metrics": list(metrics),
        }

    def _state(self, overrides):
        """What decides a run (:func:`benchmarks.paired.start_or_resume`)."""
        return {"overrides": overrides, "threads": self.threads,
                "code": provenance.code_identity()}

    def _record(self, job, stem, overrides, grows=None):
        """Run the recipe once a slot is free, into a fresh folder or
        resuming an unfinished run of the same overrides and code
        (:func:`benchmarks.paired.start_or_resume`; ``grows``: an
        override that may differ); the run's record."""
        out = overrides["output_folder"]
        with self.slots:
            if self.stopping.is_set():
                raise RuntimeError(f"{out}: not started (stopping)")
            resumed = start_or_resume(out, self._state(overrides),
                                      grows=grows)
            code = provenance.code_state()  # what the run imports
            wall = run_recipe(RECIPE, f"{stem}.yaml", overrides,
                              self.threads)
        split = overrides["evaluate_on"]
        items = read_per_utterance(os.path.join(out, f"{split}_results.csv"))
        return {
            "id": job_id(job), **job, "yaml": f"{stem}.yaml",
            "overrides": overrides, "split": split, "items": items,
            "means": mean_scores(items),
            "train": last_epoch_stats(os.path.join(out, "train_log.txt")),
            "wall_seconds": wall, "code": code,
            **({"resumed": True} if resumed else {}),
        }

    def backbone(self, job):
        """Train a backbone from scratch until its validation loss stops
        improving: rounds of ``backbone_epochs``, each continuing the
        last (the budget changes nothing but where the run stops), until
        the best epoch is ``patience`` epochs before the round's end or
        ``max_backbone_epochs`` is reached; score its best checkpoint on
        the validation speakers."""
        stem = BACKBONES[job["backbone"]][0]
        step, patience = (self.setup["backbone_epochs"],
                          self.setup["patience"])
        epochs, walls = step, []
        stored = stored_run_state(  # a run stopped in a later round
            self.folder(job),
            self._state(self._overrides(job, step, "valid", SCORES)),
            "number_of_epochs")
        if stored:
            epochs = max(step, stored["overrides"]["number_of_epochs"])
        while True:
            overrides = self._overrides(job, epochs, "valid", SCORES)
            record = self._record(job, stem, overrides,
                                  grows="number_of_epochs")
            walls.append(record["wall_seconds"])
            losses = valid_losses(os.path.join(overrides["output_folder"],
                                               "train_log.txt"))
            best = 1 + min(range(len(losses)), key=losses.__getitem__)
            plateaued = bool(best <= len(losses) - patience)
            if plateaued or epochs >= self.setup["max_backbone_epochs"]:
                break
            epochs = min(epochs + step, self.setup["max_backbone_epochs"])
        record.update(valid_losses=losses, best_epoch=best,
                      epochs=len(losses), plateaued=plateaued,
                      rounds=len(walls), wall_seconds=sum(walls))
        if self.models:
            archive = self.archive(job)
            record["archive"] = {
                "file": os.path.relpath(archive, REPO),
                "sha256": archive_run(overrides["output_folder"], archive,
                                      ["enhance_model"]),
            }
        return record

    def archive(self, job):
        """Where a backbone's best checkpoint is archived
        (:mod:`benchmarks.run_archive`)."""
        return os.path.join(self.models,
                            job_id(job).replace("/", "_") + ".safetensors")

    def fork(self, job, setting, split):
        """Fine-tune a backbone (``init_from``) for the fork's epochs: no
        CR (``continued``) or CR/CCR at ``setting``, in the job's space."""
        backbone = self.folder(backbone_job(self.setup, job["backbone"]))
        arm = job["arm"]
        if job["stage"] == "sweep":
            stem, extra, space = (("{backbone}", {}, None)
                                  if arm == "continued" else
                                  ("cr_wavlm_{backbone}", {}, "trained"))
        else:
            stem, extra, space = TEST_FORKS[arm]
        stem = stem.format(backbone=BACKBONES[job["backbone"]][0])
        metrics = SCORES if split == "valid" or self.quick else TEST_METRICS
        overrides = {
            **self._overrides(job, self.setup["finetune_epochs"], split,
                              metrics),
            **extra, "init_from": backbone,
        }
        if space is not None:
            form, weight, order = parse_setting(setting)
            overrides.update(ssl_overrides(self.ssl_folders[space]))
            overrides.update(cr_form=form, cr_weight=weight,
                             cr_layer_weights=ORDERS[order])
        if arm.startswith("ccr"):
            overrides["reference_model"] = backbone
        return {**self._record(job, stem, overrides),
                "setting": setting if space else None, "space": space}


def rebuild_backbones(protocol, runs, forks, jobs):
    """Restore, or else train again, the recorded backbones that ``forks``
    need whose folders are gone (a run resumed on another machine).

    A backbone whose archive (:mod:`benchmarks.run_archive`, recorded with
    its SHA-256) is there is restored from it. One without it is trained
    again and must give its recorded per-utterance validation scores
    exactly, or forks from it would not be paired with the recorded ones:
    stops otherwise. A retrained backbone's wall time and code go to the
    file's ``rebuilt`` list (its new archive to its record); its record
    is not added again.

    Example
    -------
    >>> import tempfile
    >>> from benchmarks.paired import ResumableRuns
    >>> work = tempfile.mkdtemp()
    >>> runs = ResumableRuns(os.path.join(work, "r.json"), {})
    >>> runs.add({"id": "backbone/b/seed1", "items": {"u": {"pesq": 2}}})
    >>> class Again(Protocol):
    ...     def backbone(self, job):
    ...         return {"id": job_id(job), "items": {"u": {"pesq": 2}},
    ...                 "wall_seconds": 1.0, "code": None}
    >>> fork = {"stage": "sweep", "backbone": "b", "seed": 1,
    ...         "arm": "continued"}
    >>> rebuild_backbones(Again(QUICK, work, {}, 1, True), runs, [fork], 1)
    [backbone/b/seed1] trained again: the recorded validation scores
    >>> runs.data["rebuilt"][0]["id"]
    'backbone/b/seed1'
    """
    done = {run["id"]: run for run in runs.runs}
    needed = {}
    for fork in forks:
        job = backbone_job(protocol.setup, fork["backbone"])
        folder = protocol.folder(job)
        if job_id(job) not in done or os.path.isdir(
                os.path.join(folder, "save")):
            continue
        archived = done[job_id(job)].get("archive", {})
        path = os.path.join(REPO, archived.get("file", "-"))
        if os.path.isfile(path) and file_sha256(path) == archived["sha256"]:
            restore_run(path, folder)
            print(f"[{job_id(job)}] restored from {archived['file']}",
                  flush=True)
        else:
            needed[job_id(job)] = job

    def finished(job, record):
        recorded = done[record["id"]]
        if json.dumps(record["items"]) != json.dumps(recorded["items"]):
            raise SystemExit(
                f"error: {record['id']} trained again does not give its "
                "recorded validation scores: forks from it would not be "
                "paired with the recorded runs; pass another --out")
        if "archive" in record:  # its new archive (same weights)
            recorded["archive"] = record["archive"]
        runs.note_rebuilt({"id": record["id"],
                           "wall_seconds": record["wall_seconds"],
                           "code": record["code"]})
        print(f"[{record['id']}] trained again: the recorded validation "
              "scores", flush=True)

    run_in_phases([list(needed.values())], protocol.backbone, jobs,
                  finished)


def models_folder(out):
    """Where the backbones of a results file ``out`` are archived: beside
    the committed results, in ``benchmarks/models/<name>/``; elsewhere,
    ``<out without .json>_models/``.

    Example
    -------
    >>> os.path.relpath(models_folder(os.path.join(
    ...     REPO, "benchmarks", "results", "cr_protocol.json")), REPO)
    'benchmarks/models/cr_protocol'
    >>> models_folder("/tmp/x/cr.json")
    '/tmp/x/cr_models'
    """
    stem = os.path.splitext(os.path.abspath(out))[0]
    results = os.path.join(REPO, "benchmarks", "results")
    if os.path.dirname(stem) == results:
        return os.path.join(REPO, "benchmarks", "models",
                            os.path.basename(stem))
    return stem + "_models"


def parse_args(argv):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("backbone", "sweep", "test"),
                        default="test", help="stop after this stage")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpus, few epochs, 1 seed")
    parser.add_argument("--trained_ssl", default=None,
                        help="CR's SSL space: a folder of "
                        "recipes/Voicebank/ssl_pretrain (default: the "
                        "committed benchmarks/models/ssl_hubert_small; a "
                        "--quick run makes a tiny random one)")
    parser.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES),
                        help="comma-separated, among "
                        f"{', '.join(BACKBONES)} (a results file records "
                        "every backbone it has runs of, sorted)")
    parser.add_argument("--sweep_seeds", type=int, nargs="+", default=None)
    parser.add_argument("--test_seeds", type=int, nargs="+", default=None)
    parser.add_argument("--backbone_epochs", type=int, default=None)
    parser.add_argument("--finetune_epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs side by side (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run")
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "cr_protocol.json"),
        help="JSON output (resumed from when it exists); the runs go to "
        "<out without .json>_runs/, the backbones' archives to "
        "benchmarks/models/<out name>/ for an --out in benchmarks/results, "
        "else to <out without .json>_models/")
    args = parser.parse_args(argv)
    args.backbones = [b for b in args.backbones.split(",") if b]
    if set(args.backbones) - set(BACKBONES):
        parser.error(f"backbones among {list(BACKBONES)}")
    if args.trained_ssl is None and not args.quick:
        args.trained_ssl = TRAINED_SSL
    if args.trained_ssl and not os.path.isfile(
            os.path.join(args.trained_ssl, "config.json")):
        parser.error(f"{args.trained_ssl}: no trained SSL model; make one "
                     "with recipes/Voicebank/ssl_pretrain/train.py")
    setup = dict(QUICK if args.quick else FULL)
    for key in ("sweep_seeds", "test_seeds", "backbone_epochs",
                "finetune_epochs"):
        if getattr(args, key):
            setup[key] = getattr(args, key)
    if set(setup["sweep_seeds"]) & set(setup["test_seeds"]):
        parser.error("the test seeds must be fresh: none of the sweep's")
    return args, setup


def _placeholders(record, ssl_folders):
    """A record naming the SSL folders by their space, not their path."""
    names = {folder: f"<{space} ssl>" for space, folder in
             ssl_folders.items()}
    overrides = {k: names.get(v, v) if isinstance(v, str) else v
                 for k, v in record["overrides"].items()}
    return {**record, "overrides": overrides}


def main(argv=None):
    """Run the protocol's stages up to ``--stage`` (see the module doc)."""
    from lobes.ssl.probe import save_random_init
    from lobes.ssl_features import save_tiny_ssl_model

    argv = sys.argv[1:] if argv is None else list(argv)
    args, setup = parse_args(argv)
    work = os.path.splitext(args.out)[0] + "_runs"
    trained = os.path.abspath(args.trained_ssl or save_tiny_ssl_model(
        "hubert", os.path.join(work, "tiny_hubert")))
    # The control: the trained space's architecture, randomly initialised
    # (seed 1: the quick run's tiny "trained" model is seed 0's draw)
    ssl_folders = {
        "trained": trained,
        "random": save_random_init(
            trained, os.path.join(work, "random_init_ssl"), seed=1),
    }
    block = provenance.start(
        [__file__, *argv], placeholders={
            args.trained_ssl: "<trained ssl folder>", args.out: "<out>"},
        corpus=f"mini VoiceBank-DEMAND ({setup['corpus_size']})",
        threads=args.threads)
    runs = ResumableRuns(args.out, {
        "training": setup, "backbones": sorted(args.backbones),
        "sizes": {b: BACKBONES[b][1] for b in sorted(args.backbones)},
        "margin_db": MARGIN_DB, "orders": ORDERS, "threads": args.threads,
        "trained_ssl": os.path.basename(ssl_folders["trained"]),
        "trained_ssl_sha256": ssl_weights_sha256(ssl_folders["trained"]),
    }, merge=merged_setup)
    data = runs.data
    protocol = Protocol(setup, work, ssl_folders, args.threads, args.quick,
                        models=models_folder(args.out), jobs=args.jobs)
    begin = time.perf_counter()

    def save():
        with runs.lock:
            data.update(backbone_summary=summarize_backbones(data),
                        sweep=summarize_sweep(data),
                        test=summarize_test(data),
                        provenance=provenance.finish(block))
            runs.save(table=markdown_table(data))

    def run_jobs(jobs, work_fn):
        todo = [j for j in jobs if job_id(j) not in runs.done()]
        print(f"{len(jobs) - len(todo)} of {len(jobs)} runs done",
              flush=True)

        def finished(job, record):
            with runs.lock:
                runs.runs.append(_placeholders(record, ssl_folders))
                save()
            means = record["means"]
            print(f"[{record['id']}] {record['split']}: PESQ "
                  f"{means['pesq']:.2f}, eSTOI {means['estoi']:.3f}, SI-SDR "
                  f"{means['si_sdr']:.2f} dB, "
                  f"{record['wall_seconds'] / 60:.1f} min "
                  f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
                  flush=True)

        run_in_phases([todo], work_fn, args.jobs, finished)

    def backbones(backbone):
        run_jobs([backbone_job(setup, backbone)], protocol.backbone)
        if "noisy_valid" not in data:
            # a backbone trained here wrote the validation manifest (a
            # restored one has only its checkpoint)
            manifest = next(
                path for path in (
                    os.path.join(protocol.folder(backbone_job(setup, b)),
                                 "save", "voicebank_valid.csv")
                    for b in (backbone, *args.backbones))
                if os.path.isfile(path))
            items = noisy_scores(manifest)
            with runs.lock:
                data["noisy_valid"] = mean_scores(items)
                data["noisy_valid_utterances"] = len(items)
        save()
        check_backbones(data, [setup["backbone_seed"]], [backbone],
                        strict=not args.quick)

    def forks(stage, backbone, arms, seeds, split, setting_of):
        jobs = [{"stage": stage, "backbone": backbone, "seed": s, "arm": arm}
                for arm in arms for s in seeds]
        rebuild_backbones(
            protocol, runs,
            [job for job in jobs if job_id(job) not in runs.done()],
            args.jobs)
        run_jobs(jobs,
                 lambda job: protocol.fork(job, setting_of(job), split))

    def pipeline(backbone):
        """One backbone's stages, in order; the backbones' pipelines run
        side by side and share the ``--jobs`` slots, so that one's runs
        fill a slot the other leaves idle (e.g. while its last backbone
        trains)."""
        seeds = setup["sweep_seeds"]
        backbones(backbone)
        if args.stage == "backbone":
            return
        grid = [setting_name(f, w) for f in setup["forms"]
                for w in setup["weights"]]
        forks("sweep", backbone, ["continued", *grid], seeds, "valid",
              lambda job: job["arm"])
        with runs.lock:  # the other order, at the best form x weight
            settings = summarize_sweep(data)[backbone]["settings"]
        best = choose_setting({n: settings[n] for n in grid})
        form, weight, _ = parse_setting(best["setting"])
        forks("sweep", backbone, [setting_name(form, weight, "deep")],
              seeds, "valid", lambda job: job["arm"])
        save()
        with runs.lock:
            chosen = data["sweep"][backbone]["choice"]
        print(f"choice, {backbone}: {chosen['why']}", flush=True)
        if args.stage != "test":
            return
        with runs.lock:
            frozen = data.setdefault("frozen_choice", {}).setdefault(
                backbone, chosen["setting"])
        if frozen != chosen["setting"]:
            raise SystemExit(
                f"error: the test stage of {backbone} began with the choice "
                f"{frozen}, the sweep now gives {chosen['setting']}; a "
                "choice is not changed after the test set was scored: pass "
                "another --out")
        forks("test", backbone, list(TEST_FORKS), setup["test_seeds"],
              "test", lambda job: frozen)

    failed = []

    def reported(backbone):
        try:
            pipeline(backbone)
        except (SystemExit, RuntimeError) as error:  # said now; the other
            failed.append(backbone)                  # backbone goes on
            if not protocol.stopping.is_set():  # else Ctrl-C says it all
                print(f"error: {backbone}: "
                      f"{str(error).removeprefix('error: ')}",
                      file=sys.stderr, flush=True)

    pool = concurrent.futures.ThreadPoolExecutor(len(args.backbones))
    futures = [pool.submit(reported, b) for b in args.backbones]
    try:
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        protocol.stopping.set()  # no run starts; the running ones got the
        pool.shutdown()          # signal too and save their checkpoints
        raise SystemExit(
            f"stopped by Ctrl-C: the finished runs are in {args.out}; run "
            "the same command to resume the others from their checkpoints"
        ) from None
    pool.shutdown()
    save()
    print()
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} stopped (above)")

if __name__ == "__main__":
    main(sys.argv[1:])
