"""What the quality benchmarks share: recipe runs, paired seeds, resuming.

Every benchmark run is a recipe's own ``train.py`` in a subprocess (one
CPU thread by default), so a benchmark measures what users run. Runs are
kept in a JSON file written after each one; a restarted benchmark skips
the runs already there. Arms are compared with their baseline seed by
seed: the mean paired difference with a 95 % t-interval.

Authors
 * noise-robust-sb contributors 2025
"""

import concurrent.futures
import contextlib
import csv
import heapq
import itertools
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

from benchmarks.provenance import portable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Two-sided 95 % quantiles of Student's t, by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
         7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def paired_interval(differences):
    """Mean and 95 % t-interval half-width of paired differences.

    Example
    -------
    >>> mean, half = paired_interval([1.0, 2.0, 3.0])
    >>> mean, round(half, 3)
    (2.0, 2.484)
    >>> paired_interval([0.5])
    (0.5, nan)
    """
    values = [d for d in differences if not math.isnan(d)]
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, T_975.get(len(values) - 1, 1.96) * sem


def fmt(value, digits=2, sign=False):
    """A number for a table (``n/a`` for NaN).

    Example
    -------
    >>> fmt(1.234), fmt(0.5, sign=True), fmt(float("nan"))
    ('1.23', '+0.50', 'n/a')
    """
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_delta(mean, half, digits=2):
    """``+0.50 [-0.74, +1.74]`` (or the mean alone without an interval).

    Example
    -------
    >>> fmt_delta(0.5, 1.24)
    '+0.50 [-0.74, +1.74]'
    """
    if math.isnan(half):
        return fmt(mean, digits, sign=True)
    return (f"{fmt(mean, digits, sign=True)} "
            f"[{fmt(mean - half, digits, sign=True)}, "
            f"{fmt(mean + half, digits, sign=True)}]")


def summarize(runs, group_keys, metrics, baseline):
    """Per group: the mean and std of each metric over seeds, and for
    every arm but the baseline, the paired difference to the baseline run
    of the same seed (mean and 95 % interval half-width).

    Arguments
    ---------
    runs : list of dict
        Each with the ``group_keys``, ``"arm"``, ``"seed"`` and the metrics.
    group_keys : tuple of str
        Keys naming a comparison (e.g. condition and backbone).
    metrics : tuple of str
        The numbers to average and compare.
    baseline : callable
        ``baseline(run) -> dict`` of the group values of the run it is
        compared with (its ``"arm"`` included).

    Example
    -------
    >>> runs = [{"b": "x", "arm": "base", "seed": s, "m": v}
    ...         for s, v in ((1, 1.0), (2, 2.0))]
    >>> runs += [{"b": "x", "arm": "new", "seed": s, "m": v}
    ...          for s, v in ((1, 2.0), (2, 4.0))]
    >>> rows = summarize(runs, ("b",), ("m",),
    ...                  lambda run: {"b": run["b"], "arm": "base"})
    >>> rows[1]["arm"], rows[1]["m"], rows[1]["delta_m"]
    ('new', 3.0, 1.5)
    """
    def key_of(values):
        return tuple(values[k] for k in (*group_keys, "arm"))

    groups = {}
    for run in runs:
        groups.setdefault(key_of(run), []).append(run)
    rows = []
    for key, mine in sorted(groups.items(), key=lambda kv: str(kv[0])):
        row = dict(zip((*group_keys, "arm"), key))
        row["seeds"] = sorted(r["seed"] for r in mine)
        reference = baseline(mine[0])
        base = {r["seed"]: r for r in groups.get(key_of(reference), [])}
        is_baseline = key_of(reference) == key
        for metric in metrics:
            values = [r[metric] for r in mine
                      if r.get(metric) is not None
                      and not math.isnan(r[metric])]
            row[metric] = statistics.fmean(values) if values else math.nan
            row[f"{metric}_std"] = (
                statistics.stdev(values) if len(values) > 1 else math.nan
            )
            diffs = [r[metric] - base[r["seed"]][metric] for r in mine
                     if r["seed"] in base]
            row[f"delta_{metric}"], row[f"delta_{metric}_ci95"] = (
                (math.nan, math.nan) if is_baseline
                else paired_interval(diffs)
            )
        rows.append(row)
    return rows


def last_epoch_stats(train_log):
    """The last epoch's train statistics in ``train_log.txt`` as floats.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> _ = open(path, "w").write(
    ...     "epoch: 3, lr: 1.00e-03 - train loss: 0.5, train cr: 2.1, "
    ...     "train cr_grad_ratio: 3.0e-01 - valid loss: 0.4\\n")
    >>> last_epoch_stats(path)
    {'epoch': 3, 'loss': 0.5, 'cr': 2.1, 'cr_grad_ratio': 0.3}
    """
    with open(train_log, encoding="utf-8") as fin:
        lines = [line for line in fin if line.startswith("epoch:")]
    if not lines:
        return {}
    line = lines[-1]
    stats = {"epoch": int(re.match(r"epoch: (\d+)", line).group(1))}
    train = line.split(" - ")[1] if " - " in line else ""
    for name, value in re.findall(r"train ([\w-]+): ([-\d.e+]+)", train):
        stats[name] = float(value)
    return stats


def read_average(path):
    """The ``avg`` row of a recipe's ``test_results.csv`` as floats."""
    with open(path, encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    average = next(row for row in rows if row["snt_id"] == "avg")
    values = {
        key: float(value) if value not in ("", None) else math.nan
        for key, value in average.items() if key != "snt_id"
    }
    return values, len(rows) - 1


def effective_hparam(run_folder, key):
    r"""The value a run actually used for ``key``, from its hyperparams.yaml.

    The first line ``key: value`` at any depth (the resolved experiment),
    as YAML reads the value; None if the run has no such key.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "hyperparams.yaml"), "w") as fout:
    ...     _ = fout.write("seed: 1\nobjectives:\n  cr_weight: 0.01\n")
    >>> effective_hparam(folder, "cr_weight"), effective_hparam(folder, "x")
    (0.01, None)
    """
    import yaml

    pattern = re.compile(rf"^\s*{re.escape(key)}:\s*(.+?)\s*$")
    with open(os.path.join(run_folder, "hyperparams.yaml"),
              encoding="utf-8") as fin:
        for line in fin:
            match = pattern.match(line)
            if match:
                return yaml.safe_load(match.group(1))
    return None


def run_recipe(recipe_dir, yaml, overrides, threads=1, script="train.py"):
    """Run ``<script> hparams/<yaml>`` with overrides; the wall seconds.

    Lists and mappings are passed as JSON (which YAML reads).

    Raises
    ------
    RuntimeError
        With the end of the output, if the recipe fails.
    """
    command = [sys.executable, script, f"hparams/{yaml}", "--noprogressbar"]
    command += [
        f"--{key}="
        f"{json.dumps(value) if isinstance(value, (list, dict)) else value}"
        for key, value in overrides.items()
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=REPO)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=recipe_dir, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script} {yaml} {overrides.get('output_folder')} failed (exit "
            f"{proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return time.perf_counter() - start


#: The file a benchmark writes into a run folder it starts: what the run
#: was started with, so that an unfinished run resumes only as itself.
RUN_STATE = "benchmark_run.json"

#: The key of :data:`RUN_STATE` that sums the wall seconds of every start
#: of the run (:func:`timed_run`); not part of what decides the run.
RUN_WALL = "wall_seconds"


def stored_run_state(folder, state, grows):
    """The state an unfinished run in ``folder`` was started with
    (:func:`start_or_resume`) when it is ``state`` but for the override
    ``grows``; else None.

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.join(tempfile.mkdtemp(), "run")
    >>> state = {"overrides": {"seed": 1, "epochs": 4}, "code": "abc"}
    >>> _ = start_or_resume(folder, state)
    >>> stored = stored_run_state(
    ...     folder, {**state, "overrides": {"seed": 1, "epochs": 2}},
    ...     grows="epochs")
    >>> stored["overrides"]["epochs"]
    4
    >>> stored_run_state(folder, {**state, "code": "new"}, "epochs")
    """
    state = json.loads(json.dumps(state))  # tuples as lists, as read back
    try:
        with open(os.path.join(folder, RUN_STATE), encoding="utf-8") as fin:
            stored = json.load(fin)
    except (OSError, json.JSONDecodeError):
        return None
    if state.get("code") is None or not isinstance(stored, dict):
        return None
    same = {key: value for key, value in stored.items() if key != RUN_WALL}
    if grows is not None and isinstance(stored.get("overrides"), dict):
        same = {**same, "overrides": {
            **stored["overrides"], grows: state["overrides"].get(grows)}}
    return stored if same == state else None


def start_or_resume(folder, state, grows=None):
    """Empty ``folder`` for a fresh run, or keep it when an unfinished run
    was started there with the same ``state``; whether it was kept.

    The recipe resumes a kept folder from its last checkpoint, exactly as
    if it had not stopped (``tests/test_faults.py``), so a benchmark
    stopped mid-run (a session's end, Ctrl-C) loses at most the steps
    since that checkpoint. ``state`` holds what decides the run: its
    overrides, its threads and the code it imports
    (:func:`benchmarks.provenance.code_identity`); a ``state`` whose code
    is None (uncommitted changes) never resumes. ``grows`` names an
    override, the epoch budget, that may differ: the run is continued to
    the new budget (for a run whose budget changes nothing but where it
    stops).

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.join(tempfile.mkdtemp(), "run")
    >>> state = {"overrides": {"seed": 1, "epochs": 4}, "code": "abc"}
    >>> start_or_resume(folder, state)
    False
    >>> _ = open(os.path.join(folder, "train_log.txt"), "w").write("1")
    >>> start_or_resume(folder, state)  # stopped, restarted as itself
    True
    >>> longer = {**state, "overrides": {"seed": 1, "epochs": 8}}
    >>> start_or_resume(folder, longer, grows="epochs")  # continued
    True
    >>> stored_run_state(folder, longer, None)["overrides"]["epochs"]
    8
    >>> start_or_resume(folder, {**state, "overrides": {"seed": 2}})
    False
    >>> os.listdir(folder)
    ['benchmark_run.json']
    """
    stored = stored_run_state(folder, state, grows)
    if stored is None:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    elif RUN_WALL in stored:  # the time its earlier starts took
        state = {**state, RUN_WALL: stored[RUN_WALL]}
    with open(os.path.join(folder, RUN_STATE), "w", encoding="utf-8") as fout:
        json.dump(state, fout)  # a continued run: its new budget
    return stored is not None


def timed_run(folder, run):
    """Call ``run()``, the run that :func:`start_or_resume` started or
    kept in ``folder``; the wall seconds it has taken over every start.

    Each start adds its own time, a stopped or failed one too, to the
    folder's :data:`RUN_STATE` (which a fresh start empties, and which
    :mod:`benchmarks.run_archive` keeps with an unfinished run's
    checkpoints), so that a run resumed after a session's end, or on
    another machine, reports what it cost in all.

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.join(tempfile.mkdtemp(), "run")
    >>> state = {"overrides": {"seed": 1}, "code": "abc"}
    >>> start_or_resume(folder, state)
    False
    >>> def stopped():
    ...     time.sleep(0.02)
    ...     raise KeyboardInterrupt
    >>> try:
    ...     timed_run(folder, stopped)
    ... except KeyboardInterrupt:
    ...     pass
    >>> start_or_resume(folder, state)  # resumed: the stopped start counts
    True
    >>> timed_run(folder, lambda: time.sleep(0.01)) >= 0.03
    True
    >>> start_or_resume(folder, {**state, "overrides": {"seed": 2}})
    False
    >>> timed_run(folder, lambda: None) < 0.01
    True
    """
    begin = time.perf_counter()
    try:
        run()
    finally:
        path = os.path.join(folder, RUN_STATE)
        with open(path, encoding="utf-8") as fin:
            state = json.load(fin)
        state[RUN_WALL] = state.get(RUN_WALL, 0.0) + (
            time.perf_counter() - begin)
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(state, fout)
    return state[RUN_WALL]


def dumps_results(value, indent=1, _level=0):
    """JSON of a results file: one key per line, lists of numbers or
    strings on one line (a per-utterance column is one line, not one line
    per value; the values are written as ``json.dumps`` writes them).

    Example
    -------
    >>> print(dumps_results({"a": [1, 2.5, "x"], "b": {"c": None}}))
    {
     "a": [1, 2.5, "x"],
     "b": {
      "c": null
     }
    }
    >>> json.loads(dumps_results({"n": [float("nan")]}))["n"][0] != 0
    True
    """
    pad = " " * indent * (_level + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(str(key))}: "
                 f"{dumps_results(item, indent, _level + 1)}"
                 for key, item in value.items()]
    elif (isinstance(value, (list, tuple)) and value
          and any(isinstance(item, (dict, list, tuple)) for item in value)):
        items = [f"{pad}{dumps_results(item, indent, _level + 1)}"
                 for item in value]
    else:
        return json.dumps(value)
    opening, closing = "{}" if isinstance(value, dict) else "[]"
    return (opening + "\n" + ",\n".join(items) + "\n"
            + " " * indent * _level + closing)


class ResumableRuns:
    """Runs kept in a JSON file, written after each, resumed on restart.

    Arguments
    ---------
    path : str
        The JSON file.
    setup : dict
        What every run shares; a file holding runs of another setup is
        refused (pass another path).
    pack, unpack : callable, optional
        ``data -> data``: how the file stores the runs (e.g. a column
        shared by every run written once) and how it is read back; the
        in-memory ``data`` is always the unpacked form.
    merge : callable, optional
        ``(file's setup, setup) -> setup or None``: a setup that the
        file's runs stay valid under (e.g. one that adds a backbone), kept
        from then on; None refuses the file. By default only an equal
        setup is accepted.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "bench.json")
    >>> runs = ResumableRuns(path, {"epochs": 2})
    >>> runs.add({"id": "a/1", "x": 1.0}); runs.done()
    {'a/1'}
    >>> ResumableRuns(path, {"epochs": 2}).done()
    {'a/1'}
    """

    def __init__(self, path, setup, pack=None, unpack=None, merge=None):
        self.path = path
        #: held while the runs change or the file is written (benchmarks
        #: whose runs finish in several threads hold it too)
        self.lock = threading.RLock()
        self.pack = pack or (lambda data: data)
        self.data = {"setup": setup, "runs": []}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fin:
                data = (unpack or (lambda data: data))(json.load(fin))
            stored = data.get("setup")
            if stored != portable(setup):
                merged = merge(stored, portable(setup)) if merge else None
                if merged is None:
                    raise SystemExit(
                        f"error: {path} holds runs of another setup; pass "
                        "another --out or remove it"
                    )
                data["setup"] = merged
            self.data = data
        self.data["machine"] = {
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }

    @property
    def runs(self):
        """The runs so far (list of dict)."""
        return self.data["runs"]

    def done(self):
        """Ids of the runs already there."""
        return {run["id"] for run in self.runs}

    def add(self, run, **extra):
        """Keep a run and anything else to save (summary, table); write."""
        with self.lock:
            self.runs.append(run)
            self.save(**extra)

    def note_rebuilt(self, entry):
        """Keep, in the file's ``rebuilt`` list, a run trained again on
        another machine (``entry`` has its ``id``; a later one replaces an
        earlier one of the same id); write."""
        with self.lock:
            rebuilt = [r for r in self.data.get("rebuilt", [])
                       if r["id"] != entry["id"]]
            self.save(rebuilt=rebuilt + [entry])

    def save(self, **extra):
        """Write the JSON (``extra`` keys replace earlier ones)."""
        with self.lock:
            self.data.update(extra)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)),
                        exist_ok=True)
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fout:
                fout.write(dumps_results(portable(self.pack(self.data))))
            os.replace(tmp, self.path)


class RunSlots:
    """``n`` slots for runs side by side, taken in rank order: a waiting
    run of a lower rank goes first (a backbone that forks wait on before
    the forks), runs of one rank in the order they asked.

    A plain semaphore lets a thread that has just released a slot take it
    again before the ones waiting: a pipeline of many short runs then
    keeps a long one waiting for hours.

    Example
    -------
    >>> slots = RunSlots(1)
    >>> order = []
    >>> def run(name, rank):
    ...     with slots(rank):
    ...         order.append(name)
    >>> with slots(1):  # the one slot is taken: the others queue
    ...     threads = [threading.Thread(target=run, args=(name, rank))
    ...                for name, rank in (("fork", 1), ("backbone", 0))]
    ...     for thread in threads:
    ...         thread.start()
    ...         time.sleep(0.05)
    >>> for thread in threads:
    ...     thread.join()
    >>> order
    ['backbone', 'fork']
    >>> ticket = slots.reserve(0)  # reserved before a fork asks
    >>> thread = threading.Thread(target=run, args=("fork", 1))
    >>> thread.start(); time.sleep(0.05); order[2:]
    []
    >>> with slots(ticket=ticket):
    ...     order.append("reserved")
    >>> thread.join(); order[2:]
    ['reserved', 'fork']
    """

    def __init__(self, n):
        self._free = n
        self._waiting = []  # heap of (rank, ticket)
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    def reserve(self, rank=0):
        """A place in the queue, taken now and used by a later ``with
        slots(ticket=...)`` (so that a run whose thread starts late still
        goes before the runs of a higher rank)."""
        with self._changed:
            ticket = (rank, next(self._tickets))
            heapq.heappush(self._waiting, ticket)
            return ticket

    @contextlib.contextmanager
    def __call__(self, rank=0, ticket=None):
        """Hold a slot while the ``with`` block runs (in the place of
        ``ticket``, from :meth:`reserve`, if given)."""
        me = ticket or self.reserve(rank)
        with self._changed:
            while self._free == 0 or self._waiting[0] != me:
                self._changed.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()


def run_in_phases(phases, work, jobs, on_result):
    """Run ``work(job)`` for each phase's jobs, ``jobs`` at a time.

    A phase starts once the previous one is done (a later run may need an
    earlier one's output, e.g. CCR its baseline); ``on_result(job, result)``
    is called as each run finishes.

    On Ctrl-C, or when ``on_result`` fails, no waiting job starts (on
    Ctrl-C the running ones' recipes got the signal too and save their
    checkpoints) and the interrupt or error is raised once the running
    jobs have stopped.

    Example
    -------
    >>> done = []
    >>> run_in_phases([[1, 2], [3]], lambda job: 10 * job, 2,
    ...               lambda job, result: done.append(result))
    >>> sorted(done[:2]), done[2]
    ([10, 20], 30)
    """
    for phase in phases:
        pool = concurrent.futures.ThreadPoolExecutor(jobs)
        futures = {pool.submit(work, job): job for job in phase}
        try:
            for future in concurrent.futures.as_completed(futures):
                on_result(futures[future], future.result())
        except BaseException:  # Ctrl-C, or on_result failed
            pool.shutdown(cancel_futures=True)
            raise
        finally:
            pool.shutdown()
