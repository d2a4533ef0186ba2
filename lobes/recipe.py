"""What every recipe's ``train.py`` does before and around its Brain.

How a recipe YAML is put together, as SpeechBrain's are: it holds the
experiment's wiring (its modules, objectives, optimiser, LR scheduler,
epoch counter, loaders and checkpointer) and the corpus, and it includes
parameter blocks (a backbone's sizes, the objectives' settings, the
training examples, the training loop's numbers) from the fragments under
``hparams/`` at the repository's top, one level deep, each nested under a
key with hyperpyyaml's ``!include:``::

    backbone: !include:<path to hparams/>/separation/sepformer.yaml
      num_outputs: !ref <num_spks> + <noise_aware>

A fragment declares its parameters with their defaults at its top and
includes nothing. hyperpyyaml applies command-line overrides to the top
level only; :func:`route_overrides` makes every parameter of every included
fragment reachable too: ``--lr=0.0001`` goes to the one fragment that
declares ``lr`` (the training loop's), exactly as if it had been written in
that fragment's include mapping. A misspelt name or a value of the wrong
type fails in one line (:class:`lobes.errors.HparamsError`).

``python -m lobes.recipe show <yaml> [--overrides]`` prints the resolved
experiment, as the run's ``hyperparams.yaml`` will hold it, without
training (:func:`resolved_experiment`).

``resolve_data_folder`` implements the embedded default: with no
``--data_folder`` a recipe runs on the matching mini corpus, generated into
a cache folder the first time.
"""

import difflib
import io
import os
import re
import sys
import traceback

import ruamel.yaml
import yaml

from lobes.errors import DataFolderError, HparamsError, UserError
from lobes.exclusive_run import lock_output_folder
from lobes.hparam_checks import (
    check_checkpoints,
    check_override_values,
    check_writable,
    parse_overrides,
)
from lobes.interrupt import GracefulStop

#: Values of ``data_folder`` that select the embedded mini corpus.
MINI_MARKERS = (None, "", "mini", "!mini")

_INCLUDE = "!include:"


class FragmentTree:
    """The keys a YAML file declares and the fragments it includes.

    Arguments
    ---------
    path : str
        A recipe YAML or fragment.

    Attributes
    ----------
    path : str
        The file.
    defaults : dict
        Top-level key -> its plain default (``None`` when the value is an
        object, a reference or null).
    includes : dict
        Top-level key -> :class:`FragmentTree` of the fragment it includes.
    mapped : set
        Keys whose ``!include:`` node carries a mapping of parameters.
    tags : dict
        Include key -> its tag as written (``!include:<path>``).
    wired : dict
        Include key -> the parameters its mapping sets with a ``!ref``
        (the recipe wires them, e.g. ``ssl_source: !ref <ssl[ssl_source]>``).
    aliases : dict
        Top-level key -> the include key whose parameter of the same name it
        repeats (``max_grad_norm: !ref <training[max_grad_norm]>``).

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(f"{folder}/frag.yaml", "w").write("lr: 0.1\\n")
    >>> _ = open(f"{folder}/main.yaml", "w").write(
    ...     "seed: 1\\ntraining: !include:frag.yaml\\n  lr: 0.2\\n")
    >>> tree = FragmentTree(f"{folder}/main.yaml")
    >>> sorted(tree.defaults), sorted(tree.includes["training"].defaults)
    (['seed', 'training'], ['lr'])
    """

    def __init__(self, path, _seen=()):
        self.path = path
        self.defaults = {}
        self.includes = {}
        self.mapped = set()
        self.tags = {}
        self.wired = {}
        self.aliases = {}
        try:
            with open(path, encoding="utf-8") as fin:
                document = ruamel.yaml.YAML().load(fin)
        except FileNotFoundError:
            raise HparamsError(
                f"{path}: no such YAML file; check the !include: path"
            ) from None
        except ruamel.yaml.YAMLError as err:
            raise HparamsError(
                f"{path}: not valid YAML ({_one(err)})"
            ) from None
        if not isinstance(document, dict):
            return
        base = os.path.dirname(os.path.abspath(path))
        for key, node in document.items():
            tag = getattr(getattr(node, "tag", None), "value", None) or ""
            self.defaults[key] = _plain(node)
            if tag.startswith(_INCLUDE):
                fragment = os.path.normpath(
                    os.path.join(base, tag[len(_INCLUDE):])
                )
                if fragment in _seen:
                    raise HparamsError(f"{path}: includes itself ({fragment})")
                self.includes[key] = FragmentTree(fragment, _seen + (path,))
                self.tags[key] = tag
                if isinstance(node, dict):
                    self.mapped.add(key)
                    self.wired[key] = {
                        name for name, value in node.items()
                        if _tag(value) == "!ref"
                    }
        for key, node in document.items():
            if _tag(node) == "!ref":
                target = str(getattr(node, "value", node)).strip()
                for name in self.includes:
                    if target == f"<{name}[{key}]>":
                        self.aliases[key] = name

    def all_keys(self):
        """Every key declared here or in any included fragment."""
        keys = set(self.defaults)
        for tree in self.includes.values():
            keys |= tree.all_keys()
        return keys

    def declarations(self, key):
        """Include paths (tuples of keys) of the shallowest declarations.

        Example
        -------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = open(f"{folder}/f.yaml", "w").write("lr: 0.1\\n")
        >>> _ = open(f"{folder}/m.yaml", "w").write(
        ...     "a: !include:f.yaml\\n  lr: 1\\n"
        ...     "b: !include:f.yaml\\n  lr: 2\\n")
        >>> FragmentTree(f"{folder}/m.yaml").declarations("lr")
        [('a',), ('b',)]
        """
        level = [((), self)]
        while level:
            found = [path for path, tree in level if key in tree.defaults]
            if found:
                return found
            level = [
                (path + (name,), child)
                for path, tree in level
                for name, child in tree.includes.items()
            ]
        return []

    def routes(self, key):
        """Where an override of ``key`` goes: :meth:`declarations`, less
        the fragments whose include mapping wires ``key`` with a ``!ref``
        when several declare it, or the fragment a top-level alias repeats.

        Example
        -------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = open(f"{folder}/f.yaml", "w").write("src: a\\nclip: 5\\n")
        >>> _ = open(f"{folder}/m.yaml", "w").write(
        ...     "a: !include:f.yaml\\n  clip: 1\\n"
        ...     "b: !include:f.yaml\\n  src: !ref <a[src]>\\n"
        ...     "clip: !ref <a[clip]>\\n")
        >>> tree = FragmentTree(f"{folder}/m.yaml")
        >>> tree.routes("src"), tree.routes("clip")
        ([('a',)], [('a',)])
        """
        paths = self.declarations(key)
        if paths == [()] and key in self.aliases:
            return [(self.aliases[key],)]
        if len(paths) > 1:
            unwired = [
                path for path in paths
                if key not in self.at(path[:-1]).wired.get(path[-1], ())
            ]
            if len(unwired) == 1:
                return unwired
        return paths

    def at(self, path):
        """The tree reached by following ``path`` through the includes."""
        tree = self
        for name in path:
            tree = tree.includes[name]
        return tree


def _tag(node):
    """A ruamel node's tag (``"!ref"``, ``"!include:x.yaml"``) or ``""``."""
    return getattr(getattr(node, "tag", None), "value", None) or ""


def _plain(node):
    """A node's plain Python default, or ``None`` for objects/references."""
    if getattr(getattr(node, "tag", None), "value", None):
        return None
    if isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return list(node)
    return None


def _one(err):
    return " ".join(str(err).split())[:300]


def top_level_keys(hparams_file):
    """Return the top-level keys a (hyperpyyaml) file declares, in order.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("seed: 1\\nmodel: !new:torch.nn.Identity\\n")
    >>> top_level_keys(path)
    ['seed', 'model']
    """
    return list(FragmentTree(hparams_file).defaults)


def _parse_overrides(overrides):
    if isinstance(overrides, str):
        try:
            overrides = parse_overrides(overrides)
        except yaml.YAMLError as err:
            raise HparamsError(
                f"command-line overrides are not valid YAML ({_one(err)})"
            ) from None
    return dict(overrides or {})


def _check_type(hparams_file, key, default, value):
    """One-line error when an override's type cannot replace the default."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "True or False"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, list):
        ok = isinstance(value, list)
        kind = "a list such as [a, b]"
    else:
        ok = isinstance(value, (str, int, float))
        kind = "a string"
    if not ok:
        raise HparamsError(
            f"{hparams_file}: --{key}={value!r} has the wrong type; "
            f"`{key}` takes {kind} (default {default!r})"
        )


def route_overrides(hparams_file, overrides):
    """Check command-line overrides and nest each into its fragment.

    A key declared at the YAML's top level is kept there, unless it only
    repeats a fragment's parameter of its name (``max_grad_norm: !ref
    <training[max_grad_norm]>``: it goes to the fragment); any other key must
    be declared by exactly one included fragment, not counting fragments
    whose include mapping sets it with a ``!ref`` (the shallowest one when
    fragments include fragments), and is nested under its include key,
    e.g. ``{"lr": 1e-4}`` -> ``{"training": {"lr": 1e-4}}``
    (:meth:`FragmentTree.routes`).

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict
        As SpeechBrain's ``parse_arguments`` returns them (a YAML string)
        or as a dictionary.

    Returns
    -------
    dict
        Overrides ready for ``load_hyperpyyaml``.

    Raises
    ------
    HparamsError
        One line: an unknown key (with the closest known one), an
        ambiguous key, or a value of the wrong type.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(f"{folder}/loop.yaml", "w").write("lr: 0.1\\nepochs: 2\\n")
    >>> _ = open(f"{folder}/r.yaml", "w").write(
    ...     "seed: 1\\ntraining: !include:loop.yaml\\n  epochs: 3\\n")
    >>> route_overrides(f"{folder}/r.yaml", "lr: 0.2\\nseed: 4")
    {'training': {'lr': 0.2}, 'seed': 4}
    >>> route_overrides(f"{folder}/r.yaml", {"lerning_rate": 1})
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: ...no hparam 'lerning_rate'...
    >>> route_overrides(f"{folder}/r.yaml", {"epochs": "two"})
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: ...--epochs='two' has the wrong type...
    """
    overrides = _parse_overrides(overrides)
    tree = FragmentTree(hparams_file)
    routed = {}
    for key, value in overrides.items():
        paths = tree.routes(key)
        if not paths:
            known = sorted(tree.all_keys())
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise HparamsError(
                f"{hparams_file} has no hparam '{key}' (from --{key}){hint}"
            )
        if len(paths) > 1:
            where = " and ".join(f"`{'.'.join(p)}`" for p in paths)
            raise HparamsError(
                f"{hparams_file}: --{key} is a parameter of several included "
                f"fragments ({where}); set it in the YAML under the one you "
                "mean"
            )
        path = paths[0]
        _check_type(hparams_file, key, tree.at(path).defaults[key], value)
        target = routed
        for depth, name in enumerate(path):
            parent = tree.at(path[:depth])
            # The recipe's own includes need no mapping (recipe_source).
            if depth and name not in parent.mapped:
                raise HparamsError(
                    f"{parent.path}: `{name}: !include:...` needs a mapping "
                    f"of parameters for --{key} to reach it; add one, e.g. "
                    f"`  {key}: {value}`"
                )
            target = target.setdefault(name, {})
        target[key] = value
    return routed


class _NamedText(io.StringIO):
    """YAML text that hyperpyyaml reads as the file ``name`` (whose folder
    its ``!include:`` paths are relative to)."""

    def __init__(self, text, name):
        super().__init__(text)
        self.name = name


def recipe_source(hparams_file, routed):
    """The recipe's text and the overrides hyperpyyaml is to apply to it.

    hyperpyyaml merges an override into an ``!include:`` node's mapping of
    parameters, but cannot reach an include written without one
    (``spectra: !include:stft.yaml``). Overrides of such an include are
    written into the text as its mapping, as if the YAML had them.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    routed : dict
        As :func:`route_overrides` returns them.

    Returns
    -------
    stream : io.StringIO
        The text, named after ``hparams_file``.
    overrides : dict
        The other overrides.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(f"{folder}/f.yaml", "w").write("n: 1\\nm: !ref <n> + 1\\n")
    >>> _ = open(f"{folder}/r.yaml", "w").write("a: 1\\nf: !include:f.yaml\\n")
    >>> routed = route_overrides(f"{folder}/r.yaml", {"n": 4, "a": 2})
    >>> stream, rest = recipe_source(f"{folder}/r.yaml", routed)
    >>> print(stream.getvalue(), end=""); rest
    a: 1
    f: !include:f.yaml
      n: 4
    {'a': 2}
    >>> load_hparams(f"{folder}/r.yaml", {"n": 4})["f"]["m"]
    5
    """
    tree = FragmentTree(hparams_file)
    with open(hparams_file, encoding="utf-8") as fin:
        lines = fin.read().splitlines(keepends=True)
    rest = dict(routed)
    for key in [k for k in routed if k in tree.tags and k not in tree.mapped]:
        line = re.compile(
            rf"^{re.escape(str(key))}\s*:\s*{re.escape(tree.tags[key])}"
            r"\s*(#.*)?$"
        )
        index = next(
            i for i, text in enumerate(lines) if line.match(text.rstrip())
        )
        body = yaml.safe_dump(rest.pop(key), sort_keys=False)
        if not lines[index].endswith("\n"):
            lines[index] += "\n"
        lines[index + 1:index + 1] = [
            f"  {text}\n" for text in body.splitlines()
        ]
    return _NamedText("".join(lines), hparams_file), rest


def check_overrides(hparams_file, overrides):
    """Fail in one line if an override names no hparam or has a bad type.

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
    route_overrides(hparams_file, overrides)


def _is_users_mistake(err):
    """Whether an exception from loading a YAML is a user's mistake.

    YAML syntax, unknown references, unknown classes and arguments that do
    not fit a class's signature come from the YAML (or the command line);
    an exception raised inside a constructor is a bug and keeps its
    traceback, unless it is one of our own :class:`UserError`.
    """
    if isinstance(err, UserError):
        return True
    if isinstance(err, (yaml.YAMLError, ruamel.yaml.YAMLError)):
        return True
    frames = traceback.extract_tb(err.__traceback__)
    last = frames[-1].filename if frames else ""
    in_loader = os.sep + "hyperpyyaml" + os.sep in last or (
        os.sep + "yaml" + os.sep in last
    )
    if isinstance(err, ImportError) and in_loader:
        return True  # !new:/!name: of something that does not exist
    if isinstance(err, (ValueError, KeyError)) and in_loader:
        return True  # bad !ref, placeholder, override structure
    if isinstance(err, TypeError) and in_loader:
        # The arguments do not bind to the class: raised at the call site.
        return True
    return False


def load_hparams(hparams_file, overrides=None):
    """Load a recipe YAML with hyperpyyaml, reporting user mistakes in one line.

    Overrides are routed into the fragments that declare them
    (:func:`route_overrides`). A mistake in the YAML or on the command line
    (syntax, an unknown reference, class or argument, a bad value) is one
    :class:`~lobes.errors.HparamsError` line; an exception raised inside a
    constructor by the package's own code keeps its traceback.

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
    stream, routed = recipe_source(
        hparams_file, route_overrides(hparams_file, overrides or {})
    )
    try:
        return load_hyperpyyaml(stream, routed, overrides_must_match=False)
    except Exception as err:
        if isinstance(err, UserError) or not _is_users_mistake(err):
            raise
        reason = _one(f"{type(err).__name__}: {err}")
        raise HparamsError(f"{hparams_file}: {reason}") from None


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
    readable (:func:`lobes.hparam_checks.check_checkpoints`); then
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

    The best checkpoint is the one with the lowest validation ``loss``; the
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
            datasets["test"],
            min_key="loss",
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
    brain.stop = None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return brain


def resolved_experiment(hparams_file, overrides=None):
    """The resolved experiment, as the run's ``hyperparams.yaml`` holds it.

    The recipe YAML with its fragments inlined, its references resolved and
    the command-line overrides routed (:func:`route_overrides`) and applied:
    the text SpeechBrain's ``create_experiment_directory`` writes, with the
    same three header lines. Nothing is built or trained.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict, optional
        Command-line overrides, as for :func:`load_hparams`.

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
    try:
        resolved = resolve_references(stream, routed).getvalue()
    except Exception as err:
        if isinstance(err, UserError) or not _is_users_mistake(err):
            raise
        reason = _one(f"{type(err).__name__}: {err}")
        raise HparamsError(f"{hparams_file}: {reason}") from None
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

    from lobes.errors import exit_on_user_error

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
