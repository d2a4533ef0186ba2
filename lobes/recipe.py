"""What every recipe's ``train.py`` does before and around its Brain.

:func:`start_experiment` loads the recipe YAML with its command-line
overrides (:func:`load_recipe`: each override routed to the fragment that
declares it and checked, by :mod:`lobes.overrides`), then sets up the
output folder (:func:`setup_experiment`: writable, one run at a time, its
checkpoints readable, ``hyperparams.yaml`` written);
:func:`prepare_corpus` writes the manifests and :func:`fit_and_test` trains
and tests the best checkpoint. :func:`choose` and :func:`cpu_workers` are
called from the YAMLs (``!apply:lobes.recipe.choose``).

``python -m lobes.recipe show <yaml> [--overrides]`` prints the resolved
experiment, as the run's ``hyperparams.yaml`` will hold it, without
training (:func:`resolved_experiment`).

``resolve_data_folder`` implements the embedded default: with no
``--data_folder`` a recipe runs on the matching mini corpus, generated into
a cache folder the first time.
"""

import gc
import os
import sys

from lobes.checkpoint_files import check_checkpoints
from lobes.errors import DataFolderError, HparamsError, exit_on_user_error
from lobes.exclusive_run import lock_output_folder
from lobes.hparam_checks import check_override_values, check_writable
from lobes.interrupt import GracefulStop
from lobes.overrides import (
    load_hparams,
    recipe_source,
    route_overrides,
    users_mistakes_in_one_line,
)

#: Values of ``data_folder`` that select the embedded mini corpus.
MINI_MARKERS = (None, "", "mini", "!mini")


def load_recipe(argv=None):
    """Parse a recipe command line and load its hyperparameters.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    hparams : dict
    hparams_file : str
    run_opts : dict
    overrides : dict
        The overrides, routed into their fragments.
    """
    import speechbrain as sb

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        raise HparamsError(
            "no hparams file given; run `python train.py hparams/<name>.yaml`"
        )
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if os.path.isfile(hparams_file):
        check_override_values(hparams_file, overrides)
    routed = route_overrides(hparams_file, overrides) if os.path.isfile(
        hparams_file
    ) else {}
    hparams = load_hparams(hparams_file, overrides)
    return hparams, hparams_file, run_opts, routed


def choose(choice, options):
    """The option a string hparam names (a YAML switch between objects).

    Used in YAML as ``!apply:lobes.recipe.choose`` with ``choice: !ref
    <waveform_loss>`` and the ``options`` mapping, so that every option is
    written (and built) in the YAML and the command line picks one by name.

    Example
    -------
    >>> choose("mse", {"mse": 1, "si_snr": 2})
    1
    >>> choose("l2", {"mse": 1, "si_snr": 2})
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: 'l2' is not one of: mse, si_snr
    """
    if choice not in options:
        raise HparamsError(
            f"'{choice}' is not one of: {', '.join(map(str, options))}"
        )
    return options[choice]


def cpu_workers(max_workers):
    """``max_workers`` DataLoader workers, but no more than the CPU cores.

    Example
    -------
    >>> 1 <= cpu_workers(4) <= 4
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(int(max_workers), cores))


def resolve_data_folder(data_folder, corpus, size="small", seed=0):
    """Return the corpus folder a recipe should read.

    A ``data_folder`` of ``None``, ``""`` or ``"mini"`` selects the embedded
    mini corpus of the given name, generated on first use into the cache
    folder (``$NRSB_CACHE``, default ``~/.cache/noise_robust_sb``). Any other
    value must be an existing folder.

    Arguments
    ---------
    data_folder : str or None
        The recipe's ``data_folder`` hparam.
    corpus : str
        ``"wham"``, ``"librimix"`` or ``"voicebank"``.
    size : str
        Mini corpus size, ``"tiny"`` or ``"small"``.
    seed : int
        Mini corpus seed.

    Example
    -------
    >>> resolve_data_folder("/no/such/folder", "wham")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/folder: data folder not found; ...
    """
    if data_folder in MINI_MARKERS:
        # heavy (speech synthesis, torch): only when a mini corpus is asked
        from lobes.data.mini_corpora import ensure_mini_corpus

        return ensure_mini_corpus(corpus, size=size, seed=seed)
    data_folder = os.path.expanduser(str(data_folder))
    if not os.path.isdir(data_folder):
        raise DataFolderError(
            f"{data_folder}: data folder not found; pass --data_folder=<path "
            f"to your {corpus} corpus> or leave it out to use the mini corpus"
        )
    return data_folder


def start_experiment(argv=None):
    """Load a recipe's hparams, join DDP if launched so, make its folder.

    The first lines of every recipe's ``main``: :func:`load_recipe`, then
    :func:`setup_experiment`.

    Returns
    -------
    hparams : dict
    hparams_file : str
    run_opts : dict
    """
    hparams, hparams_file, run_opts, overrides = load_recipe(argv)
    setup_experiment(hparams, hparams_file, run_opts, overrides)
    return hparams, hparams_file, run_opts


def setup_experiment(hparams, hparams_file, run_opts, overrides):
    """Check and lock the output folder, then SpeechBrain's set-up.

    The output folder must be writable, holds one run at a time
    (:func:`lobes.exclusive_run.lock_output_folder`) and its checkpoints must be
    readable (:func:`lobes.checkpoint_files.check_checkpoints`); then
    SpeechBrain's ``ddp_init_group`` and ``create_experiment_directory``.

    Then ``<output_folder>/hyperparams.yaml``: the YAML, its fragments
    inlined and the (routed) overrides applied, what
    :func:`resolved_experiment` prints. Recipes that check
    something first (so that a failed check leaves no folder behind) call
    :func:`load_recipe`, check, then this.
    """
    import speechbrain as sb

    # Nothing is written before the folder is known to be writable and
    # ours: a second run into it stops here, in one line.
    check_writable(hparams["output_folder"])
    sb.utils.distributed.ddp_init_group(run_opts)
    lock_output_folder(hparams["output_folder"])
    checkpointer = hparams.get("checkpointer")
    if checkpointer is not None:
        check_checkpoints(checkpointer.checkpoints_dir)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
    )
    if sb.utils.distributed.if_main_process():
        path = os.path.join(hparams["output_folder"], "hyperparams.yaml")
        with open(path, "w", encoding="utf-8") as fout:
            fout.write(_resolved(hparams_file, overrides))


def prepare_corpus(prepare, hparams, corpus, **options):
    """Resolve the data folder and write the manifests, on the main process.

    Arguments
    ---------
    prepare : callable
        A preparation function of :mod:`lobes.data.prepare`.
    hparams : dict
        The recipe's hparams (``data_folder``, ``mini_corpus_size``,
        ``save_folder``, ``skip_prep``).
    corpus : str
        The mini corpus to use when ``data_folder`` is ``mini``.
    **options
        Further keyword arguments of ``prepare``.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``.
    """
    from speechbrain.utils.distributed import run_on_main

    data_folder = run_on_main(
        resolve_data_folder,
        args=[hparams["data_folder"], corpus, hparams["mini_corpus_size"]],
    )
    return run_on_main(
        prepare,
        kwargs={
            "data_folder": data_folder,
            "save_folder": hparams["save_folder"],
            "skip_prep": hparams["skip_prep"],
            **options,
        },
    )


def fit_and_test(brain, datasets, hparams):
    """Train on ``datasets["train"]``, then test the best checkpoint.

    The best checkpoint is the one with the lowest validation ``loss``. It
    is scored on the split ``evaluate_on`` names (default ``test``; a
    recipe with ``evaluate_on: valid`` scores the validation set instead,
    so that settings can be chosen without touching the test set); the
    epoch counter and loader options are the recipe YAML's
    (``epoch_counter``, ``{train,valid,test}_dataloader_opts``). Under
    torchrun, every process then leaves the process group together, so
    that none exits while gloo's threads still run (which aborts it).
    """
    import torch.distributed as dist
    from speechbrain.utils.distributed import if_main_process

    # Ctrl-C or SIGTERM: stop at the next safe point with a checkpoint and
    # one line saying that the same command resumes.
    with GracefulStop(announce=if_main_process()) as brain.stop:
        brain.fit(
            hparams["epoch_counter"],
            datasets["train"],
            datasets["valid"],
            train_loader_kwargs=hparams["train_dataloader_opts"],
            valid_loader_kwargs=hparams["valid_dataloader_opts"],
        )
        brain.evaluate(
            datasets[hparams.get("evaluate_on") or "test"],
            min_key="loss",
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
    brain.stop = None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        release_distributed(brain)
        dist.destroy_process_group()
    return brain


def release_distributed(brain):
    """Unwrap the Brain's DDP modules and free the wrappers now.

    A DDP wrapper's reducer holds gloo work and tensors; freed only at
    interpreter exit, after the process group is gone, it can abort the
    process ("terminate called without an active exception", seen once
    in a loaded test run of the two-process recipe test). Freed here,
    while the interpreter and the group are alive. The modules themselves
    (the trained weights) stay in ``brain.modules``.

    Example
    -------
    >>> import torch
    >>> class Holder:
    ...     modules = torch.nn.ModuleDict({"net": torch.nn.Linear(2, 2)})
    >>> holder = Holder()
    >>> release_distributed(holder)
    >>> type(holder.modules["net"]).__name__
    'Linear'
    """
    from torch.nn.parallel import DistributedDataParallel

    for name, module in list(brain.modules.items()):
        if isinstance(module, DistributedDataParallel):
            brain.modules[name] = module.module
    gc.collect()


def resolved_experiment(hparams_file, overrides=None):
    """The resolved experiment, as the run's ``hyperparams.yaml`` holds it.

    The recipe YAML with its fragments inlined, its references resolved and
    the command-line overrides routed
    (:func:`lobes.overrides.route_overrides`) and applied: the text
    SpeechBrain's ``create_experiment_directory`` writes, with the same
    three header lines. Nothing is built or trained.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict, optional
        Command-line overrides, as for :func:`lobes.overrides.load_hparams`.

    Returns
    -------
    str
        The YAML text.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(f"{folder}/loop.yaml", "w").write("lr: 0.1\\n")
    >>> _ = open(f"{folder}/r.yaml", "w").write(
    ...     "training: !include:loop.yaml\\n  lr: 0.2\\n"
    ...     "opt: !name:torch.optim.Adam\\n  lr: !ref <training[lr]>\\n")
    >>> print(resolved_experiment(f"{folder}/r.yaml", {"lr": 0.3})
    ...       .split("disable\\n")[1])
    training:
      lr: 0.3
    opt: !name:torch.optim.Adam
      lr: 0.3
    <BLANKLINE>
    """
    if not os.path.isfile(hparams_file):
        raise HparamsError(f"{hparams_file}: no such hparams file")
    return _resolved(
        hparams_file, route_overrides(hparams_file, overrides or {})
    )


def _resolved(hparams_file, routed):
    """:func:`resolved_experiment` of overrides already routed."""
    from datetime import date

    from hyperpyyaml import resolve_references

    stream, routed = recipe_source(hparams_file, routed)
    with users_mistakes_in_one_line(hparams_file):
        resolved = resolve_references(stream, routed).getvalue()
    return (
        f"# Generated {date.today()} from:\n"
        f"# {os.path.abspath(hparams_file)}\n"
        "# yamllint disable\n" + resolved
    )


def main(argv=None):
    """``python -m lobes.recipe show <yaml> [--overrides]``.

    Prints the resolved experiment (:func:`resolved_experiment`); SpeechBrain
    run options (``--device``, ``--debug``...) are accepted and ignored, as
    they are not part of ``hyperparams.yaml``.

    Example
    -------
    >>> main(["list"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    import speechbrain as sb

    argv = sys.argv[1:] if argv is None else list(argv)

    @exit_on_user_error
    def run():
        if len(argv) < 2 or argv[0] != "show" or argv[1].startswith("-"):
            raise HparamsError(
                "usage: python -m lobes.recipe show <hparams.yaml> "
                "[--name=value ...]"
            )
        hparams_file, _, overrides = sb.parse_arguments(argv[1:])
        sys.stdout.write(resolved_experiment(hparams_file, overrides))

    run()


if __name__ == "__main__":
    main()
