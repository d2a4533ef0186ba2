#!/usr/bin/env python3
"""Does a refactor keep training unchanged? Per-epoch losses at two commits.

Runs recipe rows of ``tests/recipes/*.csv`` (their tiny debug flags, same
seed) at each given commit, each in a detached ``git worktree`` with its own
mini-corpus cache, and compares every statistic that ``train_log.txt``
logs at both commits, epoch by epoch, as the logged text (exact equality).
Statistics only one commit logs are listed, not compared. The tiny SSL
models are built once and shared, so that every commit sees the same ones.

Pairs of commits between which only refactors landed must give ``same``;
a pair spanning an intended behaviour change is run to show it is one::

    python -m benchmarks.same_losses --commits 19dc9bd HEAD \\
        --rows WHAM/nass_sepformer Voicebank/cmcr_net

Writes JSON (``--out``; a later command adds its pairs to the same file)
with a provenance block, every command run, every row's per-epoch
statistics at every commit and the verdict of each consecutive pair.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchmarks import provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The recipes issue 19 names (the SSL pre-training exists as a recipe
#: from d68c06b on).
DEFAULT_ROWS = (
    "WHAM/nass_sepformer", "Voicebank/ccr_wavlm_convtasnet",
    "Voicebank/cmcr_net", "NTCD-TIMIT/av_vae", "Voicebank/ctc_joint",
    "Voicebank/hubert_small",
)


#: Statistics that time the run, not compared.
TIMING = re.compile(r"seconds")


def parse_train_log(text):
    """Per-epoch statistics of a ``train_log.txt`` as logged text.

    Returns
    -------
    list of dict
        One per epoch line: ``"<stage> <name>" -> value text`` (the epoch
        and learning rate under ``"epoch"`` and ``"lr"``).

    Example
    -------
    >>> parse_train_log("epoch: 1, lr: 1.00e-03 - train loss: 2.5, "
    ...                 "train nce: 4.1 - valid loss: 2.0\\n")
    [{'epoch': '1', 'lr': '1.00e-03', 'train loss': '2.5', \
'train nce': '4.1', 'valid loss': '2.0'}]
    """
    epochs = []
    for line in text.splitlines():
        if not line.startswith("epoch:"):
            continue
        parts = line.split(" - ")
        stats = dict(re.findall(r"(epoch|lr): ([^,]+)", parts[0]))
        for part in parts[1:]:
            stats.update({
                f"{stage} {name}": value
                for stage, name, value in re.findall(
                    r"(\w+) ([\w-]+): ([^,]+)", part)
            })
        epochs.append({k: v.strip() for k, v in stats.items()})
    return epochs


def compare_logs(before, after):
    """Compare two runs' :func:`parse_train_log` epoch by epoch.

    Returns
    -------
    dict
        ``same`` (bool: equal epoch counts and every statistic logged by
        both equal), ``compared`` (how many values), ``differ`` (the first
        few differences), ``only_before`` / ``only_after`` (statistics one
        side logs).

    Example
    -------
    >>> a = [{"epoch": "1", "train loss": "2.5", "train x": "1"}]
    >>> b = [{"epoch": "1", "train loss": "2.5", "train y": "3"}]
    >>> r = compare_logs(a, b)
    >>> r["same"], r["compared"], r["only_before"], r["only_after"]
    (True, 2, ['train x'], ['train y'])
    >>> compare_logs(a, [{"epoch": "1", "train loss": "2.6"}])["differ"]
    ['epoch 1 train loss: 2.5 != 2.6']
    >>> timed = compare_logs([{"train seconds": "1"}], [{"train seconds": "2"}])
    >>> timed["same"], timed["compared"]  # timings are not compared
    (False, 0)
    """
    differ, compared = [], 0
    keys_before = set().union(*before) if before else set()
    keys_after = set().union(*after) if after else set()
    for number, (old, new) in enumerate(zip(before, after), start=1):
        for key in sorted(set(old) & set(new)):
            if TIMING.search(key):
                continue
            compared += 1
            if old[key] != new[key]:
                differ.append(f"epoch {number} {key}: {old[key]} != "
                              f"{new[key]}")
    if len(before) != len(after):
        differ.append(f"epochs: {len(before)} != {len(after)}")
    return {
        "same": not differ and compared > 0, "compared": compared,
        "differ": differ[:10],
        "only_before": sorted(keys_before - keys_after),
        "only_after": sorted(keys_after - keys_before),
    }


def restore_missing(tree, restore):
    """Put back files a commit lacks, each from a named commit.

    Arguments
    ---------
    tree : str
        A worktree of the commit.
    restore : list of str
        ``path@commit`` items: ``path`` is written from ``commit`` when the
        tree has no such file (a commit whose recipe cannot run for a file
        deleted too early can still be checked).

    Returns
    -------
    list of str
        The items restored in this tree.

    Example
    -------
    >>> import tempfile
    >>> tree = tempfile.mkdtemp()
    >>> restore_missing(tree, ["benchmarks/README.md@HEAD"])
    ['benchmarks/README.md@HEAD']
    >>> restore_missing(tree, ["benchmarks/README.md@HEAD"])  # there now
    []
    """
    restored = []
    for item in restore:
        path, source = item.rsplit("@", 1)
        target = os.path.join(tree, path)
        if os.path.exists(target):
            continue
        text = subprocess.run(["git", "show", f"{source}:{path}"], cwd=REPO,
                              check=True, capture_output=True).stdout
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fout:
            fout.write(text)
        restored.append(item)
    return restored


def _run_rows(commit, rows, work, ssl_folder, restore=()):
    """Run ``rows`` at ``commit``; ``row -> train_log.txt text`` (or None)."""
    tree = os.path.join(work, "trees", commit)
    if not os.path.isdir(tree):
        subprocess.run(["git", "worktree", "add", "--detach", tree, commit],
                       cwd=REPO, check=True, capture_output=True)
    restored = restore_missing(tree, restore)
    out_root = os.path.join(work, "runs", commit)
    shutil.rmtree(out_root, ignore_errors=True)
    script = (
        "import json, sys\n"
        "from tests.recipe_runner import RecipeRunner\n"
        "runner = RecipeRunner(sys.argv[1], sys.argv[2], sys.argv[3])\n"
        "print(json.dumps({n: runner.run(n) if n in runner.rows else "
        "[False, 'no such row at this commit'] for n in sys.argv[4:]}))\n"
    )
    env = dict(os.environ, PYTHONPATH=tree)
    done = subprocess.run(
        [sys.executable, "-c", script, out_root,
         os.path.join(work, "cache", commit), ssl_folder, *rows],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )
    status = json.loads(done.stdout.strip().splitlines()[-1])
    logs = {}
    for row in rows:
        path = os.path.join(out_root, row, "train_log.txt")
        ok, message = status[row]
        # "12.3s", or "exit 2 after 3s" (the command's paths left out)
        logs[row] = {"ok": ok, "message": message.split(": ")[0][:80],
                     "restored": restored}
        if ok and os.path.isfile(path):
            with open(path, encoding="utf-8") as fin:
                logs[row]["epochs"] = parse_train_log(fin.read())
    return logs


def resolve(commit):
    """The full hash of a commit name.

    Example
    -------
    >>> len(resolve("HEAD"))
    40
    """
    return subprocess.run(["git", "rev-parse", commit], cwd=REPO,
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def main(argv=None):
    """Run the rows at every commit and compare consecutive commits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", nargs="+", required=True)
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--restore", nargs="+", default=[],
                        metavar="PATH@COMMIT",
                        help="files to put back, from COMMIT, at a commit "
                        "that lacks them")
    parser.add_argument("--out", default=os.path.join(
        REPO, "benchmarks", "results", "same_losses.json"))
    parser.add_argument("--work", default=None,
                        help="worktrees, caches and runs (default: a "
                        "temporary folder, removed after)")
    args = parser.parse_args(argv)
    block = provenance.start([__file__, *(argv or sys.argv[1:])],
                             corpus="tiny mini corpora", threads=1)
    work = args.work or tempfile.mkdtemp(prefix="same_losses_")
    commits = [resolve(c) for c in args.commits]
    logs = {}
    try:
        from lobes.ssl_features import save_tiny_ssl_model

        ssl_folder = os.path.join(work, "ssl")
        for kind in ("wavlm", "hubert", "wav2vec2"):
            if not os.path.isdir(os.path.join(ssl_folder, kind)):
                save_tiny_ssl_model(kind, os.path.join(ssl_folder, kind))
        for commit in commits:
            print(f"running {len(args.rows)} rows at {commit[:8]}",
                  flush=True)
            logs[commit] = _run_rows(commit, args.rows, work, ssl_folder,
                                    args.restore)
    finally:
        for commit in commits:
            subprocess.run(["git", "worktree", "remove", "--force",
                            os.path.join(work, "trees", commit)],
                           cwd=REPO, capture_output=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    pairs = []
    for before, after in zip(commits, commits[1:]):
        for row in args.rows:
            old, new = logs[before][row], logs[after][row]
            verdict = ({"same": None, "note": "not run at both"}
                       if "epochs" not in old or "epochs" not in new
                       else compare_logs(old["epochs"], new["epochs"]))
            pairs.append({"before": before, "after": after, "row": row,
                          **verdict})
            print(f"{before[:8]} -> {after[:8]} {row}: "
                  f"{'same' if verdict['same'] else verdict}", flush=True)
    results = merge(args.out, {"runs": logs, "pairs": pairs})
    results["commit_times"] = {
        commit: int(subprocess.run(
            ["git", "show", "-s", "--format=%ct", commit], cwd=REPO,
            check=True, capture_output=True, text=True).stdout)
        for commit in results["runs"]
    }
    results["provenance"] = provenance.finish(block)
    results["commands"] = sorted({*results.get("commands", []),
                                  block["command"]})
    results["table"] = markdown_table(results)
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump(provenance.portable(results), fout, indent=1)
    print(results["table"])
    return results


def merge(path, new):
    """``new`` runs and pairs added to those of the results file ``path``.

    A pair checked again replaces its earlier verdict; the pairs stay in
    the order first checked.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> pair = {"before": "a", "after": "b", "row": "x", "same": False}
    >>> _ = open(path, "w").write(json.dumps({"runs": {"a": {}},
    ...                                       "pairs": [pair]}))
    >>> merged = merge(path, {"runs": {"b": {}},
    ...                       "pairs": [dict(pair, same=True)]})
    >>> sorted(merged["runs"]), merged["pairs"][0]["same"]
    (['a', 'b'], True)
    """
    old = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fin:
            old = json.load(fin)
    runs = old.get("runs", {})
    for commit, rows in new["runs"].items():
        runs.setdefault(commit, {}).update(rows)
    pairs = {(p["before"], p["after"], p["row"]): p
             for p in old.get("pairs", [])}
    for pair in new["pairs"]:
        pairs[(pair["before"], pair["after"], pair["row"])] = pair
    return {**old, "runs": runs, "pairs": list(pairs.values())}


def markdown_table(results):
    """The verdicts (a results file) as markdown, by recipe row and in
    commit order.

    Pairs where a side did not run are left out of the table and its
    failures listed below it; a side run with files put back
    (``--restore``) is marked.

    Example
    -------
    >>> a, b = "a" * 40, "b" * 40
    >>> print(markdown_table({"pairs": [
    ...     {"before": a, "after": b, "row": "WHAM/x", "same": True,
    ...      "compared": 4, "differ": []},
    ...     {"before": b, "after": "c" * 40, "row": "WHAM/x",
    ...      "same": None}],
    ...     "runs": {"c" * 40: {"WHAM/x": {"ok": False,
    ...                                   "message": "exit 2 after 3s"}}}}))
    | recipe row | before | after | per-epoch statistics | compared |
    |---|---|---|---|---:|
    | WHAM/x | aaaaaaa | bbbbbbb | same | 4 |
    <BLANKLINE>
    Did not run (exit status): WHAM/x at ccccccc.
    """
    runs = results.get("runs", {})

    def label(commit, row):
        restored = runs.get(commit, {}).get(row, {}).get("restored")
        return commit[:7] + (" (file restored)" if restored else "")

    lines = ["| recipe row | before | after | per-epoch statistics "
             "| compared |", "|---|---|---|---|---:|"]
    times = results.get("commit_times", {})
    pairs = sorted(results["pairs"], key=lambda pair: (
        pair["row"], times.get(pair["before"], 0),
        times.get(pair["after"], 0)))
    for pair in pairs:
        if pair["same"] is None:
            continue
        verdict = ("same" if pair["same"] else
                   "differ: " + pair["differ"][0] if pair["differ"]
                   else "differ")
        lines.append(f"| {pair['row']} | {label(pair['before'], pair['row'])}"
                     f" | {label(pair['after'], pair['row'])} | {verdict} "
                     f"| {pair.get('compared', 0)} |")
    failed = sorted(
        (row, commit[:7]) for commit, rows in runs.items()
        for row, run in rows.items() if not run.get("ok")
    )
    if failed:
        lines += ["", "Did not run (exit status): " + "; ".join(
            f"{row} at {', '.join(c for r, c in failed if r == row)}"
            for row in sorted({row for row, _ in failed})) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
