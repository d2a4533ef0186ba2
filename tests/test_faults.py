"""Runs that survive faults (issue 20): a real recipe, really interrupted.

Each test runs the WHAM! NASS-SepFormer recipe's ``train.py`` as a user
does, on the tiny mini corpus with a tiny model (about 8 steps an epoch):

- a real SIGINT in the middle of epoch 2, then the same command: the
  per-epoch statistics equal those of an uninterrupted run, to the last
  printed digit, and the interrupted run printed one line, no traceback;
- two runs into one folder: the second stops with one line naming the
  first, which finishes intact;
- bad inputs (``--batch_size=2.5``, ``--number_of_epochs=0``, a read-only
  output folder, a truncated checkpoint): one line, no traceback, and the
  existing run's checkpoints and results untouched.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = [pytest.mark.recipe, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")
HPARAMS = "hparams/nass_sepformer.yaml"
EPOCHS = 2
#: tests/recipes/WHAM.csv's tiny NASS-SepFormer, without --debug (whose
#: epochs are two steps), batch 1: one step per tiny training mixture;
#: dynamic mixing and PatchNCE draw random numbers at every step.
TINY_FLAGS = [
    "--mini_corpus_size=tiny", "--num_workers=0", "--segment_seconds=0.5",
    "--n_audio_to_save=1", "--encoder_channels=16",
    "--num_dual_path_blocks=1", "--num_transformer_layers=1",
    "--num_heads=2", "--d_ffn=32", "--chunk_size=20",
    "--nce_num_patches=16", "--nce_embed_dim=16", "--batch_size=1",
    "--dynamic_mixing=True", f"--number_of_epochs={EPOCHS}",
    "--noprogressbar",
    # an intra-epoch checkpoint every 2 steps tells the test where the run
    # is; the interruption saves its own checkpoint wherever it stops
    "--ckpt_interval_steps=2",
]
INTRA_EPOCH_FLAG = "brain_intra_epoch_ckpt"  # speechbrain.core's


def command(out, *flags):
    """The recipe's command line; ``flags`` replace tiny flags of the same
    name."""
    names = {flag.split("=")[0] for flag in flags}
    tiny = [flag for flag in TINY_FLAGS if flag.split("=")[0] not in names]
    return [sys.executable, "train.py", HPARAMS, f"--output_folder={out}",
            *tiny, *flags]


def environment(cache):
    return dict(os.environ, NRSB_CACHE=cache, OMP_NUM_THREADS="1",
                MKL_NUM_THREADS="1",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH",
                                                              ""))


def run(out, cache, *flags, timeout=900):
    return subprocess.run(
        command(out, *flags), cwd=RECIPE, env=environment(cache),
        capture_output=True, text=True, timeout=timeout,
    )


def start(out, cache, *flags):
    return subprocess.Popen(
        command(out, *flags), cwd=RECIPE, env=environment(cache),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # SIGINT at its default in the child, whatever the test runner's
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def epoch_stats(out):
    """``{epoch line's stage: {stat: printed value}}`` per train_log line,
    wall-clock statistics (``seconds``) left out."""
    rows = []
    with open(os.path.join(out, "train_log.txt"), encoding="utf-8") as fin:
        for line in fin:
            row = {}
            for part in line.strip().split(" - "):
                for item in part.split(", "):
                    if ": " in item:
                        key, value = item.split(": ", 1)
                        if "seconds" not in key:
                            row[key] = value
            if row:
                rows.append(row)
    return rows


def checkpoints(out):
    """``[(unixtime, meta)]`` of the run's checkpoints, oldest first."""
    save = os.path.join(out, "save")
    found = []
    for name in os.listdir(save) if os.path.isdir(save) else []:
        try:
            with open(os.path.join(save, name, "CKPT.yaml")) as fin:
                meta = yaml.safe_load(fin)
        except (OSError, yaml.YAMLError):
            continue  # being written or deleted
        if isinstance(meta, dict):
            found.append((meta.get("unixtime", 0), meta))
    return sorted(found, key=lambda x: x[0])


def one_error_line(proc):
    """The process's single ``error:`` line (and no traceback)."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines, output[-3000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]], proc.stderr[-3000:]
    return lines[-1]


def snapshot(folder):
    """Every file under ``folder`` with its content's hash."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as fin:
                files[os.path.relpath(path, folder)] = hashlib.sha256(
                    fin.read()
                ).hexdigest()
    return files


@pytest.fixture(scope="module")
def cache(mini_cache):
    from lobes.data.mini_corpora import ensure_mini_corpus

    ensure_mini_corpus("wham", "tiny", cache_dir=mini_cache)
    return mini_cache


@pytest.fixture(scope="module")
def finished_run(cache, tmp_path_factory):
    """An uninterrupted run: the reference, and a folder to protect."""
    out = str(tmp_path_factory.mktemp("faults") / "uninterrupted")
    proc = run(out, cache)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out


@pytest.fixture
def finished_copy(finished_run, tmp_path):
    """A private copy of the finished run, for a test to misuse."""
    out = str(tmp_path / "run")
    shutil.copytree(finished_run, out)
    return out


def test_sigint_mid_epoch_resumes_exactly(finished_run, cache, tmp_path):
    out = str(tmp_path / "interrupted")
    proc = start(out, cache)
    deadline = time.time() + 900
    try:
        while True:  # until an intra-epoch checkpoint of epoch 2 exists
            assert proc.poll() is None, "the run ended before the signal"
            assert time.time() < deadline, "no epoch 2 checkpoint in time"
            found = checkpoints(out)
            ends = [t for t, meta in found if "loss" in meta]
            if ends and any(INTRA_EPOCH_FLAG in meta and t > ends[0]
                            for t, meta in found):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    output = stdout + stderr
    assert proc.returncode == 130, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT after step "), last
    assert f" of epoch {EPOCHS}; checkpoint saved in " in last, last
    assert last.endswith("run the same command to resume from there"), last
    step, steps = last.split("after step ")[1].split(" of epoch")[0].split(
        " of "
    )
    assert 2 <= int(step) < int(steps), last  # in the middle of the epoch
    assert len(epoch_stats(out)) == EPOCHS - 1

    resumed = run(out, cache)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    expected = epoch_stats(finished_run)
    assert len(expected) == EPOCHS + 1  # the epochs, then the test
    assert epoch_stats(out) == expected


def test_second_run_into_one_folder_stops(cache, tmp_path):
    from lobes.exclusive_run import wait_for_lock

    out = str(tmp_path / "shared")
    first = start(out, cache)
    try:
        while not wait_for_lock(out, 1.0):
            assert first.poll() is None, "the first run ended, no lock seen"
        # Paused while it holds the lock, so that it cannot end before the
        # second run reaches the lock (a tiny run takes seconds).
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = run(out, cache)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode != 0
        line = one_error_line(second)
        assert f"{out} is in use by another run (PID {first.pid} " in line
        assert "--output_folder" in line
        stdout, stderr = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, (stdout + stderr)[-4000:]
    stats = epoch_stats(out)
    assert [row.get("epoch") for row in stats[:EPOCHS]] == [
        str(e) for e in range(1, EPOCHS + 1)
    ]
    assert len(stats) == EPOCHS + 1  # no doubled epochs
    assert os.path.isfile(os.path.join(out, "test_results.csv"))
    assert checkpoints(out)
    assert not os.path.exists(os.path.join(out, "run.lock"))


@pytest.mark.parametrize("flag, expected", [
    ("--batch_size=2.5",
     "error: --batch_size=2.5: batch_size must be a positive integer "
     "(this recipe's default: 1)"),
    ("--number_of_epochs=0",
     "error: --number_of_epochs=0: number_of_epochs must be a positive "
     "integer (this recipe's default: 200)"),
])
def test_bad_values_one_line_nothing_lost(finished_copy, cache, flag,
                                          expected):
    before = snapshot(finished_copy)
    proc = run(finished_copy, cache, flag)
    assert proc.returncode == 2
    assert one_error_line(proc) == expected
    assert snapshot(finished_copy) == before


def make_read_only(folder):
    """Make ``folder`` unwritable; return how to undo it (None: cannot)."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return lambda: os.chmod(folder, 0o755)
    # root ignores permission bits, not the immutable attribute
    if shutil.which("chattr") is None:
        return None
    if subprocess.run(["chattr", "+i", folder],
                      capture_output=True).returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", folder], check=True)


def test_read_only_output_folder(finished_copy, cache):
    before = snapshot(finished_copy)
    undo = make_read_only(finished_copy)
    if undo is None:
        pytest.skip("cannot make a folder read-only for root here")
    try:
        proc = run(finished_copy, cache)
    finally:
        undo()
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.startswith(
        f"error: {finished_copy}: output folder is not writable ("
    ), line
    assert "--output_folder" in line
    assert snapshot(finished_copy) == before


def test_truncated_checkpoint_on_resume(finished_copy, cache):
    save = os.path.join(finished_copy, "save")
    latest = sorted(
        name for name in os.listdir(save) if name.startswith("CKPT+")
    )[-1]
    path = os.path.join(save, latest, "separator.ckpt")
    with open(path, "rb") as fin:
        data = fin.read()
    with open(path, "wb") as fout:
        fout.write(data[: len(data) // 3])
    before = snapshot(finished_copy)
    proc = run(finished_copy, cache)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.startswith(
        f"error: {path}: truncated or corrupt checkpoint ("
    ), line
    assert f"delete the folder {os.path.join(save, latest)}" in line
    assert snapshot(finished_copy) == before
