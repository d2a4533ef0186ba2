"""Check that the installed environment is the locked one and that it loads.

``make env`` runs ``python -m lobes.environment`` right after installing
``requirements-lock.txt``, and the first test of the suite runs the same
check, so a broken environment stops with one line that names the package
(for example a torchaudio whose compiled extension does not match torch)
instead of dozens of collection errors.

This module imports only the standard library at its top: it must work in
an environment where torch itself is broken.
"""

import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements-lock.txt"

# Every runtime dependency by its import name (``import torchaudio`` loads
# its compiled extension, libtorchaudio.so; ``compiled_extension_failure``
# checks that it did).
RUNTIME_MODULES = (
    "torch",
    "torchaudio",
    "speechbrain",
    "hyperpyyaml",
    "transformers",
    "soundfile",
    "espeakng_loader",
    "numpy",
    "scipy",
    "tqdm",
    "pesq",
    "pystoi",
    "fast_bss_eval",
    "mir_eval",
    "speechmos",
    "librosa",
    "sklearn",
    "onnxruntime",
    "matplotlib",
)
# pysepm_evo is left out: its package __init__ imports the unpublished
# srmrpy, so lobes.metrics loads its qualityMeasures module alone.

# Installed alongside the lock, but not pinned by it.
UNPINNED = {"pip", "noise-robust-sb"}

FIX = "run `make clean env` to rebuild .venv from requirements-lock.txt"


def _canonical(name):
    """PEP 503 normal form of a distribution name.

    Arguments
    ---------
    name : str
        A distribution name as written anywhere.

    Returns
    -------
    str
        Lower case, runs of ``-``, ``_`` and ``.`` made one ``-``.

    Example
    -------
    >>> _canonical("Ruamel.YAML_clib")
    'ruamel-yaml-clib'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path=LOCK_FILE):
    """Read the exact pins of a lock file written by ``uv pip compile``.

    Arguments
    ---------
    path : str or Path
        The lock file.

    Returns
    -------
    dict
        Canonical distribution name -> pinned version.

    Example
    -------
    >>> pins = read_lock()
    >>> pins["torch"] == pins["torchaudio"]
    True
    """
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def installed_versions():
    """The distributions installed in this interpreter's environment.

    Returns
    -------
    dict
        Canonical distribution name -> installed version.

    Example
    -------
    >>> "numpy" in installed_versions()
    True
    """
    return {
        _canonical(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }


def lock_mismatches(pins, installed):
    """Where the environment departs from the lock.

    Arguments
    ---------
    pins : dict
        Name -> version of the lock (``read_lock``).
    installed : dict
        Name -> version installed (``installed_versions``).

    Returns
    -------
    list of str
        One phrase per departure: missing, other version, or not locked.

    Example
    -------
    >>> lock_mismatches({"torch": "2.11.0", "numpy": "2.4.6"},
    ...                 {"torch": "2.11.0", "numpy": "2.4.5", "six": "1.0"})
    ['numpy 2.4.5 installed, the lock pins 2.4.6',
     'six 1.0 installed, not in the lock']
    """
    problems = []
    for name in sorted(set(pins) | set(installed)):
        have, want = installed.get(name), pins.get(name)
        if name in UNPINNED or have == want:
            continue
        if have is None:
            problems.append(f"{name} missing, the lock pins {want}")
        elif want is None:
            problems.append(f"{name} {have} installed, not in the lock")
        else:
            problems.append(f"{name} {have} installed, the lock pins {want}")
    return problems


def import_failure(modules=RUNTIME_MODULES):
    """Import every runtime dependency; report the first that fails.

    Arguments
    ---------
    modules : sequence of str
        Import names, in order.

    Returns
    -------
    str or None
        One line naming the module and its error, or None when all load.

    Example
    -------
    >>> import_failure(["json", "no_such_module_here"])
    "no_such_module_here does not import: No module named 'no_such_module_here'"
    >>> import_failure(["json"]) is None
    True
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure to load is the same verdict
            first = str(err).strip().splitlines()[0] if str(err) else ""
            return f"{module} does not import: {first or type(err).__name__}"
    return None


def compiled_extension_failure():
    """Whether torchaudio's compiled extension loaded with this torch.

    Returns
    -------
    str or None
        One line when torchaudio imported but its extension did not load.

    Example
    -------
    >>> compiled_extension_failure() is None
    True
    """
    extension = importlib.import_module("torchaudio._extension")
    if getattr(extension, "_IS_TORCHAUDIO_EXT_AVAILABLE", True):
        return None
    torch = importlib.import_module("torch")
    torchaudio = importlib.import_module("torchaudio")
    return (
        f"torchaudio {torchaudio.__version__}'s compiled extension does not "
        f"load with torch {torch.__version__}"
    )


def start_pip_check():
    """Start ``pip check`` in the background, for :func:`pip_check`.

    Returns
    -------
    subprocess.Popen
        The running ``pip check``.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pip_check(process=None):
    """Run ``pip check``: every installed package's requirements are met.

    Arguments
    ---------
    process : subprocess.Popen, optional
        A ``pip check`` already started by :func:`start_pip_check`, whose
        verdict this waits for; one is run here if None.

    Returns
    -------
    str or None
        pip's first complaint, or None when it finds nothing.

    Example
    -------
    >>> complaint = pip_check()
    >>> complaint is None or isinstance(complaint, str)
    True
    """
    process = process or start_pip_check()
    stdout, stderr = process.communicate()
    if process.returncode == 0:
        return None
    lines = (stdout + stderr).strip().splitlines()
    return lines[0] if lines else f"pip check exited {process.returncode}"


def check_environment(lock=LOCK_FILE):
    """Everything above in order; the first problem found, as one line.

    Arguments
    ---------
    lock : str or Path
        The lock file the environment was made from.

    Returns
    -------
    str or None
        One line naming the package at fault and the fix, or None.

    Example
    -------
    >>> check_environment() is None
    True
    """
    mismatches = lock_mismatches(read_lock(lock), installed_versions())
    if mismatches:
        more = len(mismatches) - 1
        more = f" (and {more} more)" if more else ""
        return (
            f"environment differs from {Path(lock).name}: "
            f"{mismatches[0]}{more}; {FIX}"
        )
    checking = start_pip_check()  # it runs while the imports load
    try:
        failure = import_failure() or compiled_extension_failure()
    except BaseException:
        checking.kill()
        checking.communicate()
        raise
    if failure:
        checking.kill()
        checking.communicate()
        return f"broken environment: {failure}; {FIX}"
    complaint = pip_check(checking)
    if complaint:
        return f"pip check: {complaint}; {FIX}"
    return None


def main(argv=None):
    """Print one line and exit 1 on a broken environment; exit 0 otherwise.

    Arguments
    ---------
    argv : list of str, optional
        ``[lock_file]``; the repository's ``requirements-lock.txt`` if empty.

    Returns
    -------
    int
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else argv
    lock = Path(argv[0]) if argv else LOCK_FILE
    problem = check_environment(lock)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    count = len(read_lock(lock))
    print(f"environment OK: {count} packages as locked, all import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
