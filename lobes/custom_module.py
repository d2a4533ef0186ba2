"""The ``custom.py`` an exported folder ships, to load with SpeechBrain alone.

An exported ``hyperparams.yaml`` names this package's classes where
SpeechBrain has none (the enhancers of ``lobes.models.enhancement`` and
``lobes.models.cmcr_net``, :class:`lobes.waveform_adapter.
WaveformEnhancementAdapter`). SpeechBrain's answer for such models is a
Python module shipped in the model folder and loaded with
``speechbrain.inference.interfaces.foreign_class(source, pymodule_file=
"custom.py", classname=...)``: it imports that file (its folder on
``sys.path``) before it loads ``hyperparams.yaml`` exactly as
``from_hparams`` does.

:func:`custom_module_source` writes that file from the package's own source
files, verbatim: one source of truth, nothing maintained by hand per model.
Every module the YAML names must be self-contained (no import of this
package; checked here). Importing the file, where the package ``lobes`` is
not installed, registers its classes under the module names the YAML uses
(``lobes.models.enhancement``, ...); where the package is installed it
changes nothing, and the package's own modules are used. The file also
imports the SpeechBrain class that loads the model, so ``classname`` is
SpeechBrain's own (``WaveformEnhancement``).

Authors
 * noise-robust-sb contributors 2025
"""

import ast
import importlib
import os
import re

from lobes.errors import ModelSourceError

#: The file name of the shipped module (the hub's convention).
CUSTOM_MODULE_FILE = "custom.py"

#: The package whose modules the shipped file stands in for.
PACKAGE = "lobes"

_TAG = re.compile(r"!(?:new|name|apply):(" + PACKAGE + r"(?:\.\w+)+)\.\w+")

_PROVIDE = '''

#: The modules hyperparams.yaml names, and the names each defines here.
MODULES = {modules!r}


def _provide_missing_package(modules):
    """Register this file's names as the package's modules, if it is absent.

    Where the package is installed (and not stood in for by an earlier
    custom.py), nothing changes.
    """
    package = sys.modules.get("{package}")
    if package is None:
        try:
            package = importlib.import_module("{package}")
        except ImportError:
            package = None
    if package is not None and not getattr(package, "_from_custom_py",
                                           False):
        return
    namespace = globals()
    for name, attributes in modules.items():
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if prefix not in sys.modules:
                module = types.ModuleType(prefix)
                module.__path__ = []
                module._from_custom_py = True
                sys.modules[prefix] = module
                if depth > 1:
                    setattr(sys.modules[".".join(parts[:depth - 1])],
                            parts[depth - 1], module)
        for attribute in attributes:
            setattr(sys.modules[name], attribute, namespace[attribute])


_provide_missing_package(MODULES)
'''


def package_modules(yaml_text):
    """The modules of this package that a YAML's tags name, sorted.

    Arguments
    ---------
    yaml_text : str
        A HyperPyYAML document.

    Returns
    -------
    list of str

    Example
    -------
    >>> package_modules(
    ...     "a: !new:lobes.models.enhancement.MaskingEnhancer\\n"
    ...     "b: !new:speechbrain.lobes.models.dual_path.Encoder\\n"
    ...     "c: !new:lobes.waveform_adapter.WaveformEnhancementAdapter\\n")
    ['lobes.models.enhancement', 'lobes.waveform_adapter']
    """
    return sorted({match.group(1) for match in _TAG.finditer(yaml_text)})


def _top_level_names(tree, module):
    """What each top-level statement of a module binds: name -> meaning."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                target = alias.name if alias.asname else bound
                names[bound] = f"import {target}"
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = (
                    f"from {node.module} import {alias.name}"
                )
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                               ast.ClassDef)):
            names[node.name] = f"defined in {module}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target])
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = f"defined in {module}"
    return names


def _check_self_contained(tree, module, path):
    """Refuse a module that imports this package or imports relatively."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported = [node.module or ""]
            if node.level:
                imported = [PACKAGE]
        elif isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        else:
            continue
        for name in imported:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                raise ModelSourceError(
                    f"{path}: {module} imports {name} (line {node.lineno}); "
                    f"a module an export ships in {CUSTOM_MODULE_FILE} must "
                    "import only torch, SpeechBrain and the standard library"
                )
            if name == "__future__":
                raise ModelSourceError(
                    f"{path}: {module} has a __future__ import; it cannot be "
                    f"shipped in {CUSTOM_MODULE_FILE}"
                )


def custom_module_source(modules, interface):
    """The text of ``custom.py`` for the modules a YAML names.

    Arguments
    ---------
    modules : list of str
        Modules of this package (:func:`package_modules`).
    interface : tuple of str
        ``(module, class)`` of the SpeechBrain class that loads the model;
        the file imports it, so it is ``foreign_class``'s ``classname``.

    Returns
    -------
    str

    Raises
    ------
    ModelSourceError
        When a module imports this package, or two modules bind one name
        to different things.

    Example
    -------
    >>> text = custom_module_source(
    ...     ["lobes.waveform_adapter"],
    ...     ("speechbrain.inference.enhancement", "WaveformEnhancement"))
    >>> namespace = {}
    >>> exec(compile(text, "custom.py", "exec"), namespace)
    >>> namespace["MODULES"]["lobes.waveform_adapter"]
    ['WaveformEnhancementAdapter']
    >>> "WaveformEnhancement" in namespace
    True
    >>> custom_module_source(["lobes.pretrained"], ("a", "B"))
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ...pretrained.py: lobes.pretrained \
imports lobes...; a module an export ships in custom.py must import only ...
    """
    interface_module, interface_class = interface
    bound = {}  # name -> (meaning, module)
    parts, exported = [], {}
    for module in modules:
        path = importlib.import_module(module).__file__
        with open(path, encoding="utf-8") as fin:
            source = fin.read()
        tree = ast.parse(source, filename=path)
        _check_self_contained(tree, module, path)
        names = _top_level_names(tree, module)
        for name, meaning in names.items():
            earlier = bound.get(name)
            if earlier is not None and earlier[0] != meaning:
                raise ModelSourceError(
                    f"{path}: {module} and {earlier[1]} both define "
                    f"'{name}'; rename one to ship both in "
                    f"{CUSTOM_MODULE_FILE}"
                )
            bound[name] = (meaning, module)
        exported[module] = sorted(
            name for name, meaning in names.items()
            if meaning == f"defined in {module}"
        )
        relative = os.path.relpath(path, os.path.dirname(
            os.path.dirname(importlib.import_module(PACKAGE).__file__)
        ))
        parts.append(
            f"# {'-' * 70}\n# {relative} of noise-robust-sb, verbatim\n"
            f"# {'-' * 70}\n\n{source.rstrip()}\n"
        )
    header = (
        f'"""Classes of noise-robust-sb that this model needs, for loading '
        f"it with\nSpeechBrain alone (written by `python -m lobes.export`).\n"
        f"\nLoad the folder with:\n\n"
        f"    from speechbrain.inference.interfaces import foreign_class\n"
        f"    model = foreign_class(source=<this folder or hub id>,\n"
        f'                          pymodule_file="{CUSTOM_MODULE_FILE}",\n'
        f'                          classname="{interface_class}")\n\n'
        f"which returns SpeechBrain's {interface_class} (imported here).\n"
        "Below, verbatim, the package's modules that hyperparams.yaml "
        "names:\n" + "".join(f"{module},\n" for module in modules)
        + f"Where the package `{PACKAGE}` is "
        "not installed, importing this file registers\nthem under those "
        "names; where it is, this file changes nothing.\n\n"
        'Importing this file runs its code: load only folders you trust.\n"""'
        "\n\nimport importlib\nimport sys\nimport types\n\n"
        f"from {interface_module} import {interface_class}  # noqa: F401\n\n"
    )
    provide = _PROVIDE.format(modules=exported, package=PACKAGE)
    return header + "\n\n".join(parts) + provide

