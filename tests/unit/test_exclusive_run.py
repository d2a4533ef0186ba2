"""One run per output folder: two processes contend for the lock."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from lobes.exclusive_run import (
    LOCK_NAME,
    OutputFolderInUse,
    RunLock,
    is_main_rank,
    lock_output_folder,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

HOLDER = textwrap.dedent("""
    import sys
    from lobes.errors import exit_on_user_error
    from lobes.exclusive_run import RunLock

    @exit_on_user_error
    def main():
        with RunLock(sys.argv[1]):
            print("locked", flush=True)
            sys.stdin.read()  # hold until the parent closes our stdin
            print("released", flush=True)

    main()
""")


def start(folder, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, **(env or {})),
    )


def test_second_process_stops_in_one_line(tmp_path):
    first = start(tmp_path)
    try:
        assert first.stdout.readline().strip() == "locked"
        second = start(tmp_path)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "Traceback" not in err
        assert lines[0].startswith(f"error: {tmp_path} is in use by another ")
        assert f"PID {first.pid} on host {socket.gethostname()}" in lines[0]
        assert "--output_folder" in lines[0]
        assert out == ""
    finally:
        out, err = first.communicate("", timeout=120)
    assert first.returncode == 0 and out.strip() == "released", err
    assert not (tmp_path / LOCK_NAME).exists()


def test_killed_holder_is_taken_over_with_notice(tmp_path):
    first = start(tmp_path)
    assert first.stdout.readline().strip() == "locked"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == first.pid
    notices = []
    with RunLock(tmp_path, notice=notices.append):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    assert len(notices) == 1
    assert f"PID {first.pid}" in notices[0]
    assert notices[0].startswith("notice: taking over the lock of ")


def test_stale_lock_without_flock_judged_by_pid(tmp_path, monkeypatch):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True,
    ).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": int(dead), "host": socket.gethostname(), "since": "then"}
    ))
    monkeypatch.setattr(RunLock, "_flock", staticmethod(lambda fd: None))
    notices = []
    with RunLock(tmp_path, notice=notices.append):
        pass
    assert len(notices) == 1 and f"PID {dead}" in notices[0]

    # A live holder (this very test's parent) is respected.
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": os.getppid(), "host": socket.gethostname(), "since": "now"}
    ))
    with pytest.raises(OutputFolderInUse, match=f"PID {os.getppid()} on"):
        RunLock(tmp_path).acquire()
    # So is a holder on another host, whose PID cannot be checked.
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": int(dead), "host": "elsewhere", "since": "now"}
    ))
    with pytest.raises(OutputFolderInUse, match="on host elsewhere"):
        RunLock(tmp_path).acquire()


def test_in_process_contention_and_release(tmp_path):
    lock = lock_output_folder(tmp_path / "new")  # creates the folder
    with pytest.raises(OutputFolderInUse) as err:
        RunLock(tmp_path / "new").acquire()
    assert "\n" not in str(err.value)
    lock.release()
    with RunLock(tmp_path / "new"):
        pass


def test_only_rank_zero_takes_it(tmp_path):
    assert not is_main_rank({"RANK": "1", "LOCAL_RANK": "1"})
    assert is_main_rank({"RANK": "0", "LOCAL_RANK": "0"})
    lock = RunLock(tmp_path, environ={"RANK": "1"})
    lock.acquire()
    assert not lock.held and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):
        RunLock(tmp_path, environ={"LOCAL_RANK": "2"}).acquire()  # no error


def test_released_at_exit_without_context(tmp_path):
    script = (
        "import sys; from lobes.exclusive_run import lock_output_folder; "
        "lock_output_folder(sys.argv[1]); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert not (tmp_path / LOCK_NAME).exists()
