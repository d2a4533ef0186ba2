"""SIGINT/SIGTERM stop a training loop at a safe point, in one line."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from lobes.interrupt import (
    GracefulStop,
    TrainingInterrupted,
    brain_saver,
    stop_message,
)


@pytest.fixture
def sigint_ignored():
    """SIGINT ignored before the test, as in a background job; the test
    must install its handler explicitly and put SIG_IGN back."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGINT, before)


def fake_fit(stop, epochs=3, steps=5, stop_at=None, sig=signal.SIGINT):
    """A training loop: ``stop_at=(epoch, step)`` sends a real signal."""
    done, saved = [], []
    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1):
            done.append((epoch, step))
            if (epoch, step) == stop_at:
                os.kill(os.getpid(), sig)
            stop.stop_here(epoch, step, steps,
                           save=lambda: saved.append(done[-1]) or "ckpt")
        stop.stop_here(epoch, save=None)
    return done, saved


def test_sigint_finishes_step_saves_and_exits_in_one_line(sigint_ignored):
    stream = io.StringIO()
    progress = {}
    with pytest.raises(SystemExit) as exit_info:
        with GracefulStop(stream=stream) as stop:
            assert signal.getsignal(signal.SIGINT) == stop._handle
            progress["run"] = fake_fit(stop, stop_at=(2, 3))
    assert exit_info.value.code == 130
    assert "run" not in progress  # the loop did not finish
    lines = stream.getvalue().splitlines()
    assert lines == [
        "stopped by SIGINT after step 3 of 5 of epoch 2; checkpoint saved in "
        "ckpt; run the same command to resume from there"
    ]
    # sigint_ignored checks that SIG_IGN is back


def test_save_called_once_at_the_interrupted_step(sigint_ignored):
    calls = []
    with pytest.raises(SystemExit):
        with GracefulStop(stream=io.StringIO()) as stop:
            for step in range(1, 10):
                if step == 4:
                    os.kill(os.getpid(), signal.SIGINT)
                stop.stop_here(1, step,
                               save=lambda s=step: calls.append(s))
    assert calls == [4]


def test_sigterm_exit_code_and_previous_handler_restored():
    seen = []

    def previous(signum, frame):
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(SystemExit) as exit_info:
            with GracefulStop(stream=io.StringIO()) as stop:
                fake_fit(stop, stop_at=(1, 5), sig=signal.SIGTERM)
        assert exit_info.value.code == 143
        assert signal.getsignal(signal.SIGTERM) is previous
        assert seen == []  # the previous handler was not called meanwhile
    finally:
        signal.signal(signal.SIGTERM, before)


def test_no_signal_runs_to_the_end(sigint_ignored):
    with GracefulStop() as stop:
        done, saved = fake_fit(stop)
    assert len(done) == 15 and saved == []


def test_signal_during_validation_stops_after_the_epoch(sigint_ignored):
    stream = io.StringIO()
    with pytest.raises(SystemExit):
        with GracefulStop(stream=stream) as stop:
            for epoch in (1, 2):
                stop.stop_here(epoch, 1, save=lambda: "ckpt")
                if epoch == 1:  # "validation"
                    os.kill(os.getpid(), signal.SIGINT)
                stop.stop_here(epoch, save=lambda: "ckpt")
    assert stream.getvalue().strip() == (
        "stopped by SIGINT after epoch 1, its checkpoint saved in ckpt; "
        "run the same command to resume from there"
    )


def test_second_signal_stops_at_once_but_not_while_saving(sigint_ignored):
    stream = io.StringIO()
    with pytest.raises(SystemExit):
        with GracefulStop(stream=stream) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second signal must stop at once")
    assert "second SIGINT" in stream.getvalue()
    assert len(stream.getvalue().splitlines()) == 1

    saved = []

    def slow_save():
        os.kill(os.getpid(), signal.SIGINT)  # arrives while saving
        saved.append(True)
        return "ckpt"

    stream = io.StringIO()
    with pytest.raises(SystemExit):
        with GracefulStop(stream=stream) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            stop.stop_here(1, 1, save=slow_save)
    assert saved == [True]
    assert "checkpoint saved in ckpt" in stream.getvalue()


def test_other_exceptions_pass_through_and_restore(sigint_ignored):
    with pytest.raises(ZeroDivisionError):
        with GracefulStop():
            raise ZeroDivisionError


def test_not_announced_on_other_ranks(sigint_ignored):
    stream = io.StringIO()
    with pytest.raises(SystemExit):
        with GracefulStop(stream=stream, announce=False) as stop:
            stop.signum = signal.SIGINT
            stop.stop_here(1, 1)
    assert stream.getvalue() == ""


class _GoneStream:
    """A stderr whose reader has gone: every write fails."""

    def __init__(self, error):
        self.error = error

    def write(self, text):
        raise self.error

    def flush(self):
        raise self.error


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"),
                                   OSError(5, "Input/output error"),
                                   ValueError("I/O on closed file")])
def test_stop_exits_cleanly_when_the_terminal_is_gone(sigint_ignored,
                                                      error):
    saved = []
    with pytest.raises(SystemExit) as exit_info:
        with GracefulStop(stream=_GoneStream(error)) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            stop.stop_here(1, 2, 5, save=lambda: saved.append(2) or "ckpt")
    assert exit_info.value.code == 130
    assert saved == [2]


def test_messages_without_checkpointer():
    assert "nothing saved" in stop_message(2, 1, 3)
    assert "nothing saved" in stop_message(2, 1)
    assert isinstance(TrainingInterrupted("x"), Exception)


def test_brain_saver_resumes_with_the_same_average(tmp_path):
    import speechbrain as sb
    from speechbrain.utils.checkpoints import Checkpointer

    brain = sb.Brain({"m": torch.nn.Linear(1, 1)},
                     checkpointer=Checkpointer(str(tmp_path)))
    brain.step, brain.avg_train_loss = 2, 1.0
    # on_fit_batch_end's loss still has its graph: no warning about it
    loss = torch.tensor(3.0, requires_grad=True) * 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert brain_saver(brain, loss)() == str(tmp_path)
    assert brain.avg_train_loss == 2.0
    other = sb.Brain({"m": torch.nn.Linear(1, 1)},
                     checkpointer=Checkpointer(str(tmp_path)))
    other.checkpointer.recover_if_possible()
    assert (other.step, other.avg_train_loss) == (2, 2.0)


def test_real_process_one_line_no_traceback(tmp_path):
    """A child process in a real loop, interrupted from outside."""
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from lobes.interrupt import GracefulStop
        with GracefulStop() as stop:
            for step in range(1, 1000):
                print(step, flush=True)
                time.sleep(0.02)
                stop.stop_here(1, step, save=lambda: "save_dir")
    """))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
        # the child starts with SIGINT at its default, whatever ours is
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout.readline().strip() == "1"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("stopped by SIGINT after step ")
    assert "run the same command to resume" in lines[0]
