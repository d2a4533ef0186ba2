"""One run per output folder: a lock file held for the run's lifetime.

Two runs writing into one output folder double the epochs of
``train_log.txt``, delete each other's checkpoints and overwrite each
other's results. A run therefore takes ``<output_folder>/run.lock`` before
it writes anything: an exclusive ``fcntl.flock`` on that file, which the
kernel releases when the process ends however it ends, and in the file
the holder's PID, host and start time (and command), for the message of a
second run:

    error: results/sepformer/1234 is in use by another run (PID 4242 on
    host gpu1, since 2026-12-03 00:41:07 UTC): wait for it to end or stop
    it, or pass another --output_folder

(one line). A lock file left behind by a run that died (its lock released
by the kernel) is stale: it is taken over with a one-line notice naming
the dead holder. Where the file system does not support ``flock`` (some
network file systems), the file's PID is checked instead: a holder on this
host whose process is gone is stale; one on another host is respected.

The lock is released (the file removed) when the ``with`` block ends and,
as a fallback, at interpreter exit. Under ``torchrun`` only rank 0 takes
it (``RANK``, else ``LOCAL_RANK``, is 0 or unset): the ranks of one run
share its folder.
"""

import atexit
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time

from lobes.errors import UserError

#: The lock file's name in the output folder.
LOCK_NAME = "run.lock"


class OutputFolderInUse(UserError):
    """Another run holds the output folder's lock.

    Example
    -------
    >>> isinstance(OutputFolderInUse("x"), UserError)
    True
    """


def is_main_rank(environ=None):
    """Whether this process is rank 0 (or not launched by torchrun).

    Example
    -------
    >>> is_main_rank({}), is_main_rank({"RANK": "1"})
    (True, False)
    >>> is_main_rank({"LOCAL_RANK": "0"})
    True
    """
    environ = os.environ if environ is None else environ
    rank = environ.get("RANK", environ.get("LOCAL_RANK", "0"))
    try:
        return int(rank) == 0
    except ValueError:
        return True


def process_alive(pid):
    """Whether a process with this PID exists on this host.

    Example
    -------
    >>> process_alive(os.getpid())
    True
    """
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


def describe_holder(holder):
    """``'PID 4242 on host gpu1, since ...'`` from a lock file's record.

    Example
    -------
    >>> describe_holder({"pid": 7, "host": "h", "since": "today"})
    'PID 7 on host h, since today'
    >>> describe_holder({})
    'a run that left no record'
    """
    if not holder or "pid" not in holder:
        return "a run that left no record"
    return (
        f"PID {holder.get('pid')} on host {holder.get('host', '?')}, since "
        f"{holder.get('since', '?')}"
    )


class RunLock:
    """The lock of one output folder (a context manager).

    Arguments
    ---------
    folder : str
        The output folder (created if missing).
    name : str
        The lock file's name.
    notice : callable
        Called with the one-line notice when a stale lock is taken over
        (default: print to stderr).
    environ : dict, optional
        The environment to read ``RANK``/``LOCAL_RANK`` from.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder) as lock:
    ...     holder = json.load(open(os.path.join(folder, "run.lock")))
    ...     holder["pid"] == os.getpid()
    True
    >>> os.path.exists(os.path.join(folder, "run.lock"))  # released
    False
    """

    def __init__(self, folder, name=LOCK_NAME, notice=None, environ=None):
        self.folder = str(folder)
        self.path = os.path.join(self.folder, name)
        self.notice = notice or (
            lambda line: print(line, file=sys.stderr, flush=True)
        )
        self.environ = environ
        self.fd = None
        self.held = False

    # ------------------------------------------------------------ reading
    def read_holder(self):
        """The record in the lock file, or ``{}`` when empty or unreadable.

        Example
        -------
        >>> import tempfile
        >>> RunLock(tempfile.mkdtemp()).read_holder()
        {}
        """
        try:
            with open(self.path, encoding="utf-8") as fin:
                record = json.loads(fin.read() or "{}")
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _record(self):
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _now(),
            "command": " ".join(sys.argv),
        }

    def _in_use(self, holder):
        return OutputFolderInUse(
            f"{self.folder} is in use by another run "
            f"({describe_holder(holder)}): wait for it to end or stop it, "
            "or pass another --output_folder"
        )

    def _stale_notice(self, holder):
        if holder and holder.get("pid") != os.getpid():
            self.notice(
                f"notice: taking over the lock of {self.folder} left by a "
                f"run that is gone ({describe_holder(holder)})"
            )

    # ------------------------------------------------------------ locking
    def acquire(self):
        """Take the lock, or raise :class:`OutputFolderInUse` (one line).

        Only rank 0 of a ``torchrun`` launch takes it; other ranks return
        at once. Taking it twice is harmless.

        Example
        -------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> first, second = RunLock(folder), RunLock(folder)
        >>> first.acquire()
        >>> second.acquire()
        Traceback (most recent call last):
        ...
        lobes.exclusive_run.OutputFolderInUse: ... is in use by another run ...
        >>> first.release(); second.acquire(); second.release()
        """
        if self.held or not is_main_rank(self.environ):
            return
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is False:
                holder = self.read_holder()
                for _ in range(40):  # the holder may be writing its record
                    if holder:
                        break
                    time.sleep(0.05)
                    holder = self.read_holder()
                os.close(fd)
                raise self._in_use(holder)
            # The file may have been removed (released) between our open
            # and our lock: then we hold a lock on a deleted file; retry.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = self.read_holder()
            if locked is None and holder.get("pid") not in (None, os.getpid()):
                # No flock here: judge the holder by its PID.
                if holder.get("host") != socket.gethostname() or (
                    process_alive(holder["pid"])
                ):
                    os.close(fd)
                    raise self._in_use(holder)
            self._stale_notice(holder)
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(self._record()) + "\n").encode())
            os.fsync(fd)
            self.fd = fd
            self.held = True
            atexit.register(self.release)
            return
        raise self._in_use(self.read_holder())

    @staticmethod
    def _flock(fd):
        """True: locked; False: held by another; None: no flock here."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return None
            raise
        return True

    def release(self):
        """Remove the lock file and release the lock (idempotent).

        Example
        -------
        >>> import tempfile
        >>> lock = RunLock(tempfile.mkdtemp()); lock.acquire()
        >>> lock.release(); lock.release(); lock.held
        False
        """
        if not self.held:
            return
        self.held = False
        try:
            if self.read_holder().get("pid") == os.getpid():
                os.unlink(self.path)
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = None
        try:
            atexit.unregister(self.release)
        except Exception:  # pragma: no cover - interpreter shutting down
            pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False


def lock_output_folder(folder, **kwargs):
    """Take ``folder``'s :class:`RunLock`, held until exit; return it.

    For a recipe's set-up, where the lock must outlive the function that
    takes it: it is released at interpreter exit (``atexit``) or when the
    process dies.

    Example
    -------
    >>> import tempfile
    >>> lock = lock_output_folder(tempfile.mkdtemp())
    >>> lock.held
    True
    >>> lock.release()
    """
    lock = RunLock(folder, **kwargs)
    lock.acquire()
    return lock


def wait_for_lock(folder, seconds, name=LOCK_NAME):
    """Wait up to ``seconds`` for a lock file holding its record (tests,
    tools).

    Returns whether it exists with the holder's record written.

    Example
    -------
    >>> import tempfile
    >>> wait_for_lock(tempfile.mkdtemp(), 0.01)
    False
    """
    deadline = time.time() + float(seconds)
    path = os.path.join(str(folder), name)
    while True:
        try:
            with open(path, encoding="utf-8") as fin:
                if json.loads(fin.read() or "{}"):
                    return True
        except (OSError, ValueError):
            pass  # not there yet, or being written
        if time.time() >= deadline:
            return False
        time.sleep(0.01)
