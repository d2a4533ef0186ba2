"""What every recipe's ``train.py`` does before and around its Brain.

``load_recipe`` parses the command line the SpeechBrain way, checks that
each ``--key=value`` override names an hparam that the YAML declares (a typo
fails in one line with a suggestion), loads the YAML and turns YAML errors
into one line too. ``resolve_data_folder`` implements the embedded default:
with no ``--data_folder`` a recipe runs on the matching mini corpus,
generated into a cache folder the first time.
"""

import difflib
import os
import re
import sys

import yaml

from lobes.errors import DataFolderError, HparamsError

_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")

#: Values of ``data_folder`` that select the embedded mini corpus.
MINI_MARKERS = (None, "", "mini", "!mini")


def top_level_keys(hparams_file):
    """Return the top-level keys a (hyperpyyaml) file declares, in order.

    Keys brought in by ``!include:`` fragments are not listed; the loaded
    dictionary has them.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("seed: 1\\nmodel: !new:torch.nn.Identity\\n")
    >>> top_level_keys(path)
    ['seed', 'model']
    """
    keys = []
    with open(hparams_file, encoding="utf-8") as fin:
        for line in fin:
            match = _TOP_KEY.match(line)
            if match:
                keys.append(match.group(1))
    return keys


def check_overrides(hparams_file, overrides):
    """Fail in one line if an override names an hparam the YAML lacks.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict
        Overrides as SpeechBrain's ``parse_arguments`` returns them (a YAML
        string) or as a dictionary.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("learning_rate: 0.1\\n")
    >>> check_overrides(path, "learning_rate: 0.2")
    >>> check_overrides(path, {"lerning_rate": 0.2})
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: ...no hparam 'lerning_rate'...'learning_rate'?
    """
    if isinstance(overrides, str):
        try:
            overrides = yaml.safe_load(overrides) if overrides else {}
        except yaml.YAMLError as err:
            raise HparamsError(
                f"command-line overrides are not valid YAML ({err})"
            ) from None
    known = set(top_level_keys(hparams_file))
    known |= _included_keys(hparams_file)
    for key in overrides or {}:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise HparamsError(
                f"{hparams_file} has no hparam '{key}' (from --{key}){hint}"
            )


def _included_keys(hparams_file):
    """Top-level keys of the fragments a YAML pulls in with ``!include:``."""
    keys = set()
    base = os.path.dirname(os.path.abspath(hparams_file))
    with open(hparams_file, encoding="utf-8") as fin:
        for match in re.finditer(r"!include:([^\s]+)", fin.read()):
            path = os.path.join(base, match.group(1))
            if os.path.isfile(path):
                keys |= set(top_level_keys(path))
    return keys


def load_hparams(hparams_file, overrides=None):
    """Load a recipe YAML with hyperpyyaml, reporting problems in one line.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict, optional
        Overrides to apply.

    Returns
    -------
    dict
        The loaded hyperparameters.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("a: 1\\nb: !ref <a> + 1\\n")
    >>> load_hparams(path, {"a": 2})["b"]
    3
    >>> _ = open(path, "w").write("a: 1\\nb: !ref <c>\\n")
    >>> load_hparams(path)
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: ...h.yaml: ...
    """
    from hyperpyyaml import load_hyperpyyaml

    if not os.path.isfile(hparams_file):
        raise HparamsError(
            f"{hparams_file}: no such hparams file; pass a YAML from the "
            "recipe's hparams/ folder"
        )
    check_overrides(hparams_file, overrides or {})
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            return load_hyperpyyaml(fin, overrides or {})
    except Exception as err:  # YAML, reference and constructor errors
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise HparamsError(f"{hparams_file}: {reason[:400]}") from None


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
    overrides : str
    """
    import speechbrain as sb

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        raise HparamsError(
            "no hparams file given; run `python train.py hparams/<name>.yaml`"
        )
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    return hparams, hparams_file, run_opts, overrides


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
    """SpeechBrain's ``ddp_init_group`` and ``create_experiment_directory``.

    The latter copies the YAML and the overrides into ``output_folder``.
    Recipes that check something first (so that a failed check leaves no
    folder behind) call :func:`load_recipe`, check, then this.
    """
    import speechbrain as sb

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )


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

    The best checkpoint is the one with the lowest validation ``loss``; the
    loader options come from the YAML's ``*_dataloader_opts``.
    """
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        min_key="loss",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    return brain
