"""Run the recipes listed in ``tests/recipes/<Dataset>.csv`` as users do.

Each row runs ``python train.py <hparams> --output_folder=<dir> <flags>``
from the recipe's folder, on the tiny mini corpora, and is checked against
its ``test_debug_checks``. Flags may use placeholders:

- ``{output_root}``: the root under which every row writes
  ``<Dataset>/<yaml stem>``, so a row can use an earlier row's output
  (a row whose flags name another row's folder runs after that row);
- ``{tiny_wavlm}``, ``{tiny_hubert}``, ``{tiny_wav2vec2}``: local folders
  holding tiny HF models built from a config.
"""

import concurrent.futures
import csv
import glob
import os
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_FOLDER = os.path.join(REPO, "tests", "recipes")
COLUMNS = [
    "Task", "Dataset", "Script_file", "Hparam_file", "Data_prep_file",
    "Readme_file", "Result_url", "HF_repo", "test_debug_flags",
    "test_debug_checks", "performance",
]
_SSL_PLACEHOLDER = re.compile(r"\{tiny_(wavlm|hubert|wav2vec2)\}")


def load_rows():
    """All rows of all recipe CSVs, in file then row order."""
    rows = []
    for path in sorted(glob.glob(os.path.join(CSV_FOLDER, "*.csv"))):
        with open(path, newline="", encoding="utf-8") as fin:
            reader = csv.DictReader(fin)
            if reader.fieldnames != COLUMNS:
                raise ValueError(
                    f"{path}: columns must be {','.join(COLUMNS)}"
                )
            rows.extend(reader)
    return rows


def row_id(row):
    """``<Dataset>/<yaml stem>``, the row's name and output subfolder."""
    stem = os.path.splitext(os.path.basename(row["Hparam_file"]))[0]
    return f"{row['Dataset']}/{stem}"


def parse_checks(spec):
    """Parse ``file_exists=[a,b] ...`` into ``{"file_exists": ["a", "b"]}``.

    Example
    -------
    >>> parse_checks("file_exists=[log.txt, save/x.csv]")
    {'file_exists': ['log.txt', 'save/x.csv']}
    """
    checks = {}
    for name, body in re.findall(r"(\w+)=\[([^\]]*)\]", spec or ""):
        checks[name] = [item.strip() for item in body.split(",") if item]
    return checks


class RecipeRunner:
    """Runs rows once each, resolving placeholders and dependencies.

    :meth:`prefetch` starts the rows a session will ask for in the
    background, ``jobs`` at a time (one thread each), so that a 2-core
    machine runs two recipes at once; :meth:`run` then waits for its row.
    Prefetched rows run at a lower priority (niceness
    :attr:`BACKGROUND_NICENESS`): the tests that run meanwhile (and their
    own processes) come first, and the rows take the CPU time they leave.
    """

    BACKGROUND_NICENESS = 10

    def __init__(self, output_root, cache_dir, ssl_folder):
        self.output_root = output_root
        self.cache_dir = cache_dir
        self.ssl_folder = ssl_folder
        self.rows = {row_id(r): r for r in load_rows()}
        self.results = {}
        self.futures = {}
        self._pool = None
        #: Added to the niceness of the rows' processes: 0, or
        #: :attr:`BACKGROUND_NICENESS` once :meth:`prefetch` has started
        #: rows in the background.
        self.niceness = 0

    def prefetch(self, names, jobs=2):
        """Start ``names`` (and what they depend on) in the background.

        Rows are queued by depth: the rows that depend on no other first,
        those among them that others need at the head; then the rows whose
        dependencies are all queued before them. A worker thus rarely waits
        for a dependency that the other worker is still running.
        """
        order, depth = [], {}

        def visit(name):
            if name in order or name not in self.rows:
                return
            deps = self.dependencies(self.rows[name])
            for dep in deps:
                visit(dep)
            depth[name] = 1 + max((depth[d] for d in deps), default=-1)
            order.append(name)

        for name in names:
            visit(name)
        needed = {
            dep for name in order for dep in self.dependencies(self.rows[name])
        }
        order.sort(key=lambda name: (depth[name], name not in needed))
        for name in order:  # build the tiny SSL models here, not in threads
            self.flags(self.rows[name])
        if not order or jobs < 2:
            return
        self.niceness = self.BACKGROUND_NICENESS
        self._pool = concurrent.futures.ThreadPoolExecutor(jobs)
        for name in order:
            if name not in self.futures and name not in self.results:
                self.futures[name] = self._pool.submit(self._run_row, name)

    def close(self):
        """Stop queued rows (the running ones finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def ssl_model(self, kind):
        """Folder of a tiny local SSL model, built on first use."""
        folder = os.path.join(self.ssl_folder, kind)
        if not os.path.isdir(folder):
            from lobes.ssl_features import save_tiny_ssl_model

            save_tiny_ssl_model(kind, folder)
        return folder

    def flags(self, row):
        """The row's debug flags with placeholders filled in."""
        text = row["test_debug_flags"].replace(
            "{output_root}", self.output_root
        )
        return _SSL_PLACEHOLDER.sub(
            lambda m: self.ssl_model(m.group(1)), text
        )

    def dependencies(self, row):
        """Rows whose output folder this row's flags refer to."""
        deps = []
        for name in self.rows:
            if name != row_id(row) and (
                "{output_root}/" + name in row["test_debug_flags"]
            ):
                deps.append(name)
        return deps

    def run(self, name):
        """Run a row (after its dependencies); return (ok, message)."""
        future = self.futures.get(name)
        if future is not None and not future.cancelled():
            return future.result()
        return self._run_row(name)

    def _run_row(self, name):
        if name in self.results:
            return self.results[name]
        row = self.rows[name]
        for dep in self.dependencies(row):
            ok, message = self.run(dep)
            if not ok:
                self.results[name] = (False, f"dependency {dep}: {message}")
                return self.results[name]
        self.results[name] = self._run(name, row)
        return self.results[name]

    def _run(self, name, row):
        script = os.path.join(REPO, row["Script_file"])
        folder = os.path.dirname(script)
        hparams = os.path.relpath(os.path.join(REPO, row["Hparam_file"]),
                                  folder)
        out = os.path.join(self.output_root, name)
        cmd = [
            sys.executable, os.path.basename(script), hparams,
            f"--output_folder={out}", *shlex.split(self.flags(row)),
        ]
        # Tiny models gain nothing from intra-op threads, and two threads
        # per process thrash when the two cores are shared.
        threads = os.environ.get("NRSB_TEST_THREADS", "1")
        env = dict(os.environ, NRSB_CACHE=self.cache_dir,
                   OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                   PYTHONPATH=REPO + os.pathsep
                   + os.environ.get("PYTHONPATH", ""))
        start = time.time()
        with subprocess.Popen(
            cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ) as proc:
            if self.niceness:
                try:
                    os.setpriority(os.PRIO_PROCESS, proc.pid, self.niceness)
                except OSError:  # it has ended already
                    pass
            try:
                stdout, stderr = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        seconds = time.time() - start
        if proc.returncode != 0:
            tail = (stdout + stderr)[-4000:]
            return False, (
                f"exit {proc.returncode} after {seconds:.0f}s: "
                f"{shlex.join(cmd)}\n{tail}"
            )
        checks = parse_checks(row["test_debug_checks"])
        missing = [
            path for path in checks.get("file_exists", [])
            if not glob.glob(os.path.join(out, path))
        ]
        if missing:
            return False, f"missing outputs in {out}: {missing}"
        return True, f"{seconds:.1f}s"
