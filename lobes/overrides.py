"""Command-line overrides routed to the fragment that declares each key.

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
that fragment's include mapping (:class:`FragmentTree` reads what each file
declares and includes). A misspelt name or a value of the wrong type fails
in one line (:class:`lobes.errors.HparamsError`).

:func:`load_hparams` loads a YAML with its overrides routed so; a mistake in
the YAML or on the command line is one line too
(:func:`users_mistakes_in_one_line`), while an exception raised inside a
constructor keeps its traceback.
"""

import contextlib
import difflib
import functools
import io
import os
import re
import traceback

import ruamel.yaml
import yaml

from lobes.errors import HparamsError, UserError
from lobes.hparam_checks import parse_overrides

_INCLUDE = "!include:"


@functools.lru_cache(maxsize=256)
def _parsed_yaml(path, text):
    """A YAML file's text parsed by ruamel (read-only), once per process:
    a recipe's command line builds its :class:`FragmentTree` several times
    (checks, routing, the text with overrides, ``hyperparams.yaml``)."""
    return ruamel.yaml.YAML().load(_NamedText(text, path))


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
                document = _parsed_yaml(path, fin.read())
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


@contextlib.contextmanager
def users_mistakes_in_one_line(hparams_file):
    """Turn a user's mistake in loading ``hparams_file`` into one line.

    Inside the block, an exception that comes from the YAML or the command
    line (:func:`_is_users_mistake`) is re-raised as one
    :class:`~lobes.errors.HparamsError` line naming the file; one of our
    own :class:`~lobes.errors.UserError` and any other exception (a bug
    inside a constructor) pass through unchanged, with their tracebacks.

    Arguments
    ---------
    hparams_file : str
        The YAML being loaded, named in the message.

    Example
    -------
    >>> with users_mistakes_in_one_line("h.yaml"):
    ...     raise yaml.YAMLError("mapping  values are not allowed")
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: h.yaml: YAMLError: mapping values are not allowed
    >>> with users_mistakes_in_one_line("h.yaml"):
    ...     raise RuntimeError("a bug")
    Traceback (most recent call last):
    ...
    RuntimeError: a bug
    """
    try:
        yield
    except Exception as err:
        if isinstance(err, UserError) or not _is_users_mistake(err):
            raise
        reason = _one(f"{type(err).__name__}: {err}")
        raise HparamsError(f"{hparams_file}: {reason}") from None


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
    with users_mistakes_in_one_line(hparams_file):
        return load_hyperpyyaml(stream, routed, overrides_must_match=False)
