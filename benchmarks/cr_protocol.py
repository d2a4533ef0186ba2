#!/usr/bin/env python3
"""CR on enhancers that have learned: chosen on validation, tested once.

The protocol of ``recipes/Voicebank/enhance/README.md`` ("Protocol", issue
22), on the ``small`` mini VoiceBank-DEMAND corpus, with the backbones of
:data:`BACKBONES` (Conv-TasNet at the CPU size of :mod:`lobes.cpu_settings`,
the spectral mask at the recipe's own size). Every run is the recipe's own
``train.py``. Primary metric: wide-band PESQ; SI-SDR must stay within
``MARGIN_DB`` (0.3 dB) of the backbone continued without CR. Stages
(``--stage`` stops after one; a later stage runs the earlier ones it
needs):

1. ``backbone``: per backbone, one run (seed ``backbone_seed``) trained
   from scratch in rounds of ``backbone_epochs``, each continuing the
   last, until its validation loss stops improving (best epoch at least
   ``patience`` epochs before the round's end; at most
   ``max_backbone_epochs``); its best checkpoint (lowest validation loss)
   is the warm-start source of every fork. Scored on the validation
   speakers only (``--evaluate_on=valid``), beside the noisy input; it
   must be above the noisy input on PESQ, eSTOI and SI-SDR and have
   stopped improving, or the protocol stops.
2. ``sweep`` (validation speakers, seeds 1-3): each backbone forked
   (``--init_from``) into fine-tunes of equal steps: ``continued`` (no
   CR) and CR with every form x weight at the default layer-weight order
   (32, 16, 8, 4: shallow groups most), then the reversed order (4, 8, 16,
   32) at the best form x weight. :func:`choose_setting` picks per
   backbone the best validation PESQ among the settings whose SI-SDR is
   not worse than ``continued`` by more than 0.3 dB (paired by seed).
3. ``test`` (fresh seeds 4-8): per seed and backbone, forks of equal
   steps from the same backbone: ``continued``, ``cr`` (the chosen
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
import os
import sys
import time

from benchmarks import provenance
from benchmarks.cr_protocol_analysis import (
    MARGIN_DB,
    ORDERS,
    check_backbones,
    choose_setting,
    mean_scores,
    noisy_scores,
    parse_setting,
    setting_name,
    summarize_backbones,
    summarize_sweep,
    summarize_test,
)
from benchmarks.cr_protocol_jobs import (
    BACKBONES,
    DEFAULT_BACKBONES,
    FULL,
    QUICK,
    TEST_FORKS,
    Protocol,
    backbone_job,
    job_id,
    models_folder,
    rebuild_backbones,
)
from benchmarks.cr_protocol_tables import (
    backbone_table,
    heldout_table,
    markdown_table,
    sweep_table,
)
from benchmarks.cr_vs_baseline import TRAINED_SSL, ssl_weights_sha256
from benchmarks.paired import REPO, ResumableRuns, run_in_phases

# The renderers, for `<!-- table: ... cr_protocol.<name> -->` markers, and
# what the protocol's runs are (benchmarks.cr_protocol_jobs)
__all__ = ["BACKBONES", "FULL", "QUICK", "TEST_FORKS", "Protocol",
           "backbone_table", "heldout_table", "job_id", "main",
           "markdown_table", "rebuild_backbones", "sweep_table"]


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
    from lobes.data.mini_corpora import ensure_mini_corpus
    from lobes.data.prepare import prepare_voicebank
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

    def noisy_input(split):
        """The noisy input's scores on ``split`` (``valid``: the recipe's
        validation speakers p226, p287; ``test``: its test speakers),
        once, so that the tables show how far an enhancer is above it."""
        with runs.lock:
            if f"noisy_{split}" in data:
                return
        manifest = prepare_voicebank(
            ensure_mini_corpus("voicebank", setup["corpus_size"]),
            os.path.join(work, "noisy_input"))[split]
        items = noisy_scores(manifest)
        with runs.lock:
            data[f"noisy_{split}"] = mean_scores(items)
            data[f"noisy_{split}_utterances"] = len(items)

    def backbones(backbone):
        run_jobs([backbone_job(setup, backbone)], protocol.backbone)
        noisy_input("valid")
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
        noisy_input("test")
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

    for backbone in args.backbones:  # backbones go before any fork
        if job_id(backbone_job(setup, backbone)) not in runs.done():
            protocol.reserve(backbone_job(setup, backbone))
    pool = concurrent.futures.ThreadPoolExecutor(len(args.backbones))
    futures = [pool.submit(reported, b) for b in args.backbones]
    try:
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        protocol.stopping.set()  # no run starts; the running ones got the
        pool.shutdown()          # signal too and save their checkpoints
        kept = protocol.archive_unfinished(
            [backbone_job(setup, b) for b in args.backbones
             if job_id(backbone_job(setup, b)) not in runs.done()])
        raise SystemExit(
            f"stopped by Ctrl-C: the finished runs are in {args.out}; run "
            "the same command to resume the others from their checkpoints"
            + "".join(f"; {os.path.relpath(path, REPO)} keeps an unfinished "
                      "backbone's (commit it to go on on another machine)"
                      for path in kept)) from None
    pool.shutdown()
    save()
    print()
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} stopped (above)")

if __name__ == "__main__":
    main(sys.argv[1:])
