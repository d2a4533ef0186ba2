"""The CR protocol's runs (:mod:`benchmarks.cr_protocol`): its settings
and backbones, and what each job runs, where, and from which backbone.

Every run is the recipe's own ``train.py`` in a subprocess
(:func:`benchmarks.paired.run_recipe`), in one of the ``--jobs`` slots; a
run stopped midway resumes from its checkpoint when its overrides and the
code it imports are unchanged (:func:`benchmarks.paired.start_or_resume`).
A backbone's best checkpoint is archived (:mod:`benchmarks.run_archive`),
so that forks on another machine warm-start from the same weights.

Authors
 * noise-robust-sb contributors 2025
"""

import contextlib
import json
import os
import threading

from benchmarks import provenance
from benchmarks.cr_protocol_analysis import (
    FORMS,
    ORDERS,
    SCORES,
    WEIGHTS,
    mean_scores,
    parse_setting,
    read_per_utterance,
    valid_losses,
)
from benchmarks.cr_vs_baseline import (
    RECIPE,
    SIZES,
    TEST_METRICS,
    recipe_overrides,
    ssl_overrides,
)
from benchmarks.paired import (
    REPO,
    RunSlots,
    last_epoch_stats,
    run_in_phases,
    run_recipe,
    start_or_resume,
    stored_run_state,
    timed_run,
)
from benchmarks.run_archive import (
    archive_run,
    discard_kept,
    file_sha256,
    keep_stopped,
    restore_run,
    resume_kept,
    unfinished_path,
)

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
        self.slots = RunSlots(jobs)
        self._tickets = {}  # backbone id -> its reserved place
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

    def reserve(self, job):
        """Take a backbone's place in the slots' queue now, before any
        fork asks for one (forks wait for backbones)."""
        self._tickets[job_id(job)] = self.slots.reserve(0)

    def _slot(self, job):
        """A slot for ``job``: a backbone (rank 0) in its reserved place,
        a fork (rank 1) after every backbone waiting."""
        if job["stage"] == "backbone":
            return self.slots(0, ticket=self._tickets.pop(job_id(job), None))
        return self.slots(1)

    def _record(self, job, stem, overrides, grows=None, slot=None):
        """Run the recipe in ``slot`` (held by the caller), or once a slot
        is free, into a fresh folder or resuming an unfinished run of the
        same overrides and code (:func:`benchmarks.paired.start_or_resume`;
        ``grows``: an override that may differ); the run's record."""
        out = overrides["output_folder"]
        with slot or self._slot(job):
            if self.stopping.is_set():
                raise RuntimeError(f"{out}: not started (stopping)")
            resumed = start_or_resume(out, self._state(overrides),
                                      grows=grows)
            code = provenance.code_state()  # what the run imports
            wall = timed_run(out, lambda: run_recipe(
                RECIPE, f"{stem}.yaml", overrides, self.threads))
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
        with self._slot(job):  # one slot, held for every round
            stem = BACKBONES[job["backbone"]][0]
            step, patience = (self.setup["backbone_epochs"],
                              self.setup["patience"])
            epochs, rounds = step, 0
            folder = self.folder(job)
            unfinished = self.archive(job, unfinished=True)
            resume_kept(unfinished, folder)  # stopped on another machine
            stored = stored_run_state(  # a run stopped in a later round
                folder,
                self._state(self._overrides(job, step, "valid", SCORES)),
                "number_of_epochs")
            if stored:
                epochs = max(step, stored["overrides"]["number_of_epochs"])
            while True:
                overrides = self._overrides(job, epochs, "valid", SCORES)
                record = self._record(job, stem, overrides,
                                      grows="number_of_epochs",
                                      slot=contextlib.nullcontext())
                rounds += 1
                losses = valid_losses(os.path.join(
                    overrides["output_folder"], "train_log.txt"))
                best = 1 + min(range(len(losses)), key=losses.__getitem__)
                plateaued = bool(best <= len(losses) - patience)
                if plateaued or epochs >= self.setup["max_backbone_epochs"]:
                    break
                epochs = min(epochs + step,
                             self.setup["max_backbone_epochs"])
        record.update(valid_losses=losses, best_epoch=best,
                      epochs=len(losses), plateaued=plateaued,
                      rounds=rounds)  # its wall: every round's, in all
        if self.models:
            archive = self.archive(job)
            record["archive"] = {
                "file": os.path.relpath(archive, REPO),
                "sha256": archive_run(overrides["output_folder"], archive,
                                      ["enhance_model"]),
            }
            discard_kept(unfinished)
        return record

    def archive_unfinished(self, jobs):
        """Archive the checkpoints of the backbones among ``jobs`` stopped
        midway (:func:`benchmarks.run_archive.keep_stopped`), so that
        they go on from there on another machine; the files written."""
        return keep_stopped([(self.folder(job),
                              self.archive(job, unfinished=True))
                             for job in jobs])

    def archive(self, job, unfinished=False):
        """Where a backbone's best checkpoint is archived, or an unfinished
        backbone's checkpoints (:mod:`benchmarks.run_archive`); None when
        nothing is archived."""
        if unfinished:
            return unfinished_path(self.models, job_id(job))
        if not self.models:
            return None
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
