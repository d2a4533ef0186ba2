"""What every results file records about how its numbers were made.

A results file under ``benchmarks/results/`` carries a ``provenance``
block: the commit (and whether the tree had uncommitted changes), the exact
command, the package versions, the machine (cores, load) and the wall and
CPU time of the run. Benchmarks call :func:`start` when they begin and
:func:`finish` when they write, so that a README table generated from the
file (``python -m benchmarks.report``) can always be traced to what made it.

Authors
 * noise-robust-sb contributors 2025
"""

import importlib.metadata
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The packages whose versions decide the numbers.
PACKAGES = ("torch", "torchaudio", "speechbrain", "numpy", "scipy",
            "transformers", "pesq", "pystoi", "fast-bss-eval")

#: Keys every provenance block has (checked by the tests).
REQUIRED = ("commit", "tree_clean", "command", "packages", "machine",
            "started", "wall_s", "cpu_s")


def _git(*args):
    """Output of a git command in the repository ('' if git fails)."""
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _tree_clean():
    """Whether the tracked files are as committed, the results files left
    aside (a resumed benchmark rewrites its own committed one)."""
    return _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                ":(exclude)benchmarks/results") == ""


def _cpu_seconds():
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime
            + children.ru_stime)


def start(argv=None, placeholders=None, **facts):
    """The provenance block of a run starting now.

    Arguments
    ---------
    argv : list of str, optional
        The command line (default ``sys.argv``); stored as one string a
        user can paste in the repository (``python -m benchmarks.<name>``
        for a benchmark of this package).
    placeholders : dict, optional
        Arguments that name paths of this machine -> what the command
        shows instead (``{"/tmp/run": "<run folder>"}``), so that no
        results file names a path of the machine that wrote it.
    **facts
        What else the run is defined by: ``seeds``, ``corpus``,
        ``corpus_size``, ``threads``...

    Returns
    -------
    dict
        Pass it to :func:`finish` when writing the results.

    Example
    -------
    >>> block = start(["benchmarks/x.py", "--seeds", "1"], seeds=[1])
    >>> block["command"], block["seeds"], len(block["commit"]) in (0, 40)
    ('python -m benchmarks.x --seeds 1', [1], True)
    """
    argv = list(sys.argv if argv is None else argv)
    if argv and os.path.isabs(argv[0]):
        argv[0] = os.path.relpath(argv[0], REPO)
    module = re.fullmatch(r"benchmarks/(\w+)\.py", argv[0]) if argv else None
    if module:  # a benchmark runs as a module of the package
        argv[:1] = ["-m", f"benchmarks.{module.group(1)}"]
    argv = [(placeholders or {}).get(arg, arg) for arg in argv]
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "commit": _git("rev-parse", "HEAD"),
        "tree_clean": _tree_clean(),
        "command": "python " + shlex.join(argv),
        "packages": versions,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "_t0": [time.perf_counter(), _cpu_seconds()],
        **facts,
    }


def file_sha256(path):
    """Hex SHA-256 of a file (a model's weights, an archive).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkstemp()[1]
    >>> _ = open(path, "wb").write(b"abc")
    >>> file_sha256(path)[:12]
    'ba7816bf8f01'
    """
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_state():
    """The commit checked out now and whether the tracked tree is clean.

    A long benchmark records it per run: code committed while it runs is
    what the later runs import.

    Example
    -------
    >>> state = code_state()
    >>> sorted(state), len(state["commit"]) in (0, 40)
    (['commit', 'tree_clean'], True)
    """
    return {
        "commit": _git("rev-parse", "HEAD"),
        "tree_clean": _tree_clean(),
    }


#: What a recipe run imports: the package, the recipes and their
#: fragments (their Python and YAML; a README edit changes no run).
RUN_CODE = ("lobes", "recipes", "hparams")
RUN_CODE_SUFFIXES = (".py", ".yaml")


def code_identity(paths=RUN_CODE, suffixes=RUN_CODE_SUFFIXES):
    """A hash of the committed code a recipe run imports (the Python and
    YAML files under ``paths``), or None when any of them has uncommitted
    changes (or git is not there).

    Unlike the commit, it stays the same when only results, benchmark
    code or documentation are committed: a run stopped at one commit may
    resume at another that imports the same code.

    Example
    -------
    >>> identity = code_identity()
    >>> identity is None or len(identity) == 64
    True
    """
    import hashlib

    changed = _git("status", "--porcelain", "--untracked-files=no", "--",
                   *paths).splitlines()
    if any(line.endswith(suffixes) for line in changed):
        return None
    files = [line for line in _git("ls-files", "-s", "--", *paths)
             .splitlines() if line.endswith(suffixes)]
    if not files:
        return None
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def finish(block):
    """The block with the wall and CPU seconds and the load so far.

    Arguments
    ---------
    block : dict
        From :func:`start` (not changed).

    Returns
    -------
    dict
        A copy, JSON-ready, with ``wall_s``, ``cpu_s`` and
        ``machine.load_average_at_end``.

    Example
    -------
    >>> done = finish(start(["b.py"]))
    >>> sorted(set(REQUIRED) - set(done)), "_t0" in done
    ([], False)
    """
    wall0, cpu0 = block["_t0"]
    done = {key: value for key, value in block.items() if key != "_t0"}
    done["machine"] = dict(block["machine"],
                           load_average_at_end=list(os.getloadavg()))
    done["wall_s"] = round(time.perf_counter() - wall0, 1)
    done["cpu_s"] = round(_cpu_seconds() - cpu0, 1)
    return done


def portable(value, cache=None):
    """``value`` (JSON-like) with this machine's paths made portable.

    Strings under the repository become relative to it; under the mini
    corpora's cache (``cache``, default ``$NRSB_CACHE`` or
    ``~/.cache/noise_robust_sb``), ``<cache>/...``; so that a results file
    names no path of the machine that wrote it.

    Example
    -------
    >>> portable({"a": [os.path.join(REPO, "benchmarks", "x")], "n": 1})
    {'a': ['benchmarks/x'], 'n': 1}
    >>> portable("/data/c/wham", cache="/data/c")
    '<cache>/wham'
    """
    if cache is None:
        cache = os.environ.get("NRSB_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "noise_robust_sb")
    if isinstance(value, dict):
        return {key: portable(item, cache) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, cache) for item in value]
    if not isinstance(value, str):
        return value
    for root, shown in ((cache, "<cache>"), (REPO, None)):
        if value == root or value.startswith(root.rstrip(os.sep) + os.sep):
            rest = os.path.relpath(value, root)
            return rest if shown is None else f"{shown}/{rest}"
    return value
