"""``python -m lobes.recipe show`` prints what a run's hyperparams.yaml holds.

For every row of ``tests/recipes/*.csv``, the experiment that ``show``
prints for the row's YAML and debug flags is, line for line, the
``hyperparams.yaml`` that the row's run (made once per session by the
recipe runner, as in ``tests/test_recipes.py``) wrote; only the date on its
first line may differ. The rows' check calls the command's ``main`` in
this process (:func:`show_here`): the same code as ``python -m lobes.recipe
show`` without starting Python and importing torch again for each row;
the first test runs the command itself.
"""

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.recipe_runner import REPO, load_rows, row_id

ROWS = {row_id(row): row for row in load_rows()}


def show(hparams_file, flags):
    """The text ``python -m lobes.recipe show`` prints (and its status)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "lobes.recipe", "show", hparams_file, *flags],
        cwd=os.path.dirname(hparams_file), env=env, capture_output=True,
        text=True, timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def show_here(hparams_file, flags, capsys, monkeypatch):
    """:func:`show`, run by ``lobes.recipe.main`` in this process."""
    from lobes.recipe import main

    monkeypatch.chdir(os.path.dirname(hparams_file))
    capsys.readouterr()
    try:
        main(["show", hparams_file, *flags])
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_show_applies_routed_overrides_and_fails_in_one_line():
    yaml = os.path.join(REPO, "recipes", "WHAM", "separation", "hparams",
                        "nass_sepformer.yaml")
    code, out, err = show(yaml, ["--lr=0.001", "--nce_weight=0.5",
                                 "--device=cpu"])
    assert code == 0, err
    assert out.splitlines()[2] == "# yamllint disable"
    # The training fragment and the optimiser; the objectives' fragment.
    assert len(re.findall(r"^  lr: 0.001\b", out, re.M)) == 2
    assert len(re.findall(r"^  nce_weight: 0.5\b", out, re.M)) == 1
    code, out, err = show(yaml, ["--nce_wieght=0.5"])
    assert code == 2 and not out
    assert err.strip().splitlines() == [
        f"error: {yaml} has no hparam 'nce_wieght' (from --nce_wieght); "
        "did you mean 'nce_weight'?"
    ]


@pytest.mark.recipe
@pytest.mark.parametrize("name", sorted(ROWS))
def test_show_prints_the_runs_hyperparams(recipe_runner, name, capsys,
                                          monkeypatch):
    ok, message = recipe_runner.run(name)
    assert ok, message
    row = ROWS[name]
    out = os.path.join(recipe_runner.output_root, name)
    flags = [f"--output_folder={out}",
             *shlex.split(recipe_runner.flags(row))]
    code, printed, err = show_here(os.path.join(REPO, row["Hparam_file"]),
                                   flags, capsys, monkeypatch)
    assert code == 0, err
    with open(os.path.join(out, "hyperparams.yaml"), encoding="utf-8") as fin:
        written = fin.read()
    assert printed.startswith("# Generated ")
    assert printed.splitlines()[1:] == written.splitlines()[1:]
