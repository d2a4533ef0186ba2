"""Ctrl-C and SIGTERM stop training at a safe point, with a checkpoint.

A recipe's ``fit`` runs under :class:`GracefulStop`. SIGINT (Ctrl-C) or
SIGTERM (a scheduler's time limit, ``kill``) only sets a flag; the Brain
looks at it at safe points, where it calls :meth:`GracefulStop.stop_here`:

- after a training step (``on_fit_batch_end``): SpeechBrain's intra-epoch
  checkpoint is saved (``Brain._save_intra_epoch_ckpt``: the modules, the
  optimiser, the Brain's ``step`` and ``avg_train_loss``, the train
  loader's position, the random state), and the same command resumes in
  the middle of that epoch;
- after an epoch's end-of-epoch checkpoint (``on_stage_end`` of
  validation): nothing more to save, the same command starts the next
  epoch.

Then :class:`TrainingInterrupted` ends the run: leaving the ``with`` block
prints ONE line (where it stopped, where the checkpoint is, that the same
command resumes) and exits with ``128 + signal`` (130 for Ctrl-C, 143 for
SIGTERM), without a traceback. A second signal before a safe point is
reached stops at once (also in one line), unless a checkpoint is being
written, which is always finished first.

On leaving, the handlers in force before are put back, whatever they were
(``SIG_IGN`` in a background job, a caller's own handler). Under DDP each
process gets the signal from ``torchrun``; the flag is agreed on across
processes (:func:`any_process`) so that they all stop at the same step.
"""

import signal
import sys
import threading

from lobes.errors import UserError

#: The signals that stop training gracefully.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(UserError):
    """A signal stopped training; the message says where and how to resume.

    Example
    -------
    >>> err = TrainingInterrupted("stopped", signal.SIGINT)
    >>> str(err), err.exit_code
    ('stopped', 130)
    """

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self):
        """``128 + signal``, the shell's status for a process it killed."""
        return 128 + self.signum


def any_process(flag):
    """Whether ``flag`` is set on any DDP process (itself when not DDP).

    Example
    -------
    >>> any_process(True), any_process(False)
    (True, False)
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    value = torch.tensor([1 if flag else 0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def signal_name(signum):
    """``'SIGINT'`` for ``signal.SIGINT``.

    Example
    -------
    >>> signal_name(15)
    'SIGTERM'
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def stop_message(signum, epoch, step=None, steps=None, saved_in=None):
    """The one line that says where training stopped and how to resume.

    Arguments
    ---------
    signum : int
        The signal received.
    epoch : int
        The epoch in progress (or just finished, when ``step`` is None).
    step : int, optional
        The last step done in ``epoch``; None: stopped after the epoch.
    steps : int, optional
        The steps of an epoch, when known.
    saved_in : str, optional
        The checkpoint folder; None: nothing was saved.

    Example
    -------
    >>> stop_message(2, 2, 3, 8, "out/save")
    'stopped by SIGINT after step 3 of 8 of epoch 2; checkpoint saved in out/save; run the same command to resume from there'
    >>> stop_message(15, 2, saved_in="out/save")
    'stopped by SIGTERM after epoch 2, its checkpoint saved in out/save; run the same command to resume from there'
    """  # noqa: E501
    name = signal_name(signum)
    if step is None:
        where = f"after epoch {epoch}"
        if saved_in is None:
            return (
                f"stopped by {name} {where}; no checkpointer, nothing saved: "
                "the same command starts over"
            )
        return (
            f"stopped by {name} {where}, its checkpoint saved in "
            f"{saved_in}; run the same command to resume from there"
        )
    of = f" of {steps}" if steps else ""
    where = f"after step {step}{of} of epoch {epoch}"
    if saved_in is None:
        return (
            f"stopped by {name} {where}; no checkpointer, nothing saved: "
            "the same command starts over"
        )
    return (
        f"stopped by {name} {where}; checkpoint saved in {saved_in}; "
        "run the same command to resume from there"
    )


class GracefulStop:
    """Turn SIGINT/SIGTERM into a stop at the next safe point.

    Arguments
    ---------
    signals : tuple of int
        The signals to handle (SIGINT and SIGTERM).
    stream : file, optional
        Where the final line goes (default ``sys.stderr``).
    announce : bool
        Print the final line on this process (False on DDP ranks other
        than 0, whose line would repeat rank 0's).

    Example
    -------
    >>> import os
    >>> steps_done = []
    >>> try:
    ...     with GracefulStop(stream=sys.stdout) as stop:
    ...         for step in range(1, 6):
    ...             steps_done.append(step)
    ...             if step == 2:
    ...                 os.kill(os.getpid(), signal.SIGINT)
    ...             stop.stop_here(epoch=1, step=step, steps=5,
    ...                            save=lambda: "out/save")
    ... except SystemExit as exit:
    ...     code = exit.code
    stopped by SIGINT after step 2 of 5 of epoch 1; checkpoint saved in out/save; run the same command to resume from there
    >>> steps_done, code
    ([1, 2], 130)
    """  # noqa: E501

    def __init__(self, signals=SIGNALS, stream=None, announce=True):
        self.signals = tuple(signals)
        self.stream = stream
        self.announce = announce
        self.signum = None
        self.previous = {}
        self._saving = False
        self._late = None

    # -------------------------------------------------------------- handlers
    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        if self._saving:  # a second signal while saving: finish first
            self._late = signum
            return
        raise TrainingInterrupted(
            f"stopped at once by a second {signal_name(signum)}, before a "
            "checkpoint could be saved; run the same command to resume from "
            "the last saved checkpoint",
            signum,
        )

    def __enter__(self):
        self.signum = None
        self._late = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.restore()
        if isinstance(exc, TrainingInterrupted):
            if self.announce:
                stream = self.stream or sys.stderr
                try:
                    print(str(exc), file=stream, flush=True)
                except (OSError, ValueError):
                    # the terminal is gone (closed pipe, hung-up tty,
                    # closed file): the checkpoint is saved, so the
                    # exit code alone reports the stop
                    pass
            raise SystemExit(exc.exit_code) from None
        return False

    def restore(self):
        """Put back the handlers in force before (idempotent).

        Example
        -------
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> stop = GracefulStop().__enter__()
        >>> signal.getsignal(signal.SIGTERM) == stop._handle
        True
        >>> stop.restore(); signal.getsignal(signal.SIGTERM) == before
        True
        """
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None
                          else signal.SIG_DFL)
        self.previous = {}

    # ----------------------------------------------------------- safe points
    @property
    def requested(self):
        """Whether a signal asked to stop (on any DDP process).

        Example
        -------
        >>> GracefulStop().requested
        False
        """
        return any_process(self.signum is not None)

    def stop_here(self, epoch, step=None, steps=None, save=None):
        """At a safe point: if asked to stop, save and raise.

        Arguments
        ---------
        epoch : int
            The epoch in progress (or just finished, ``step`` None).
        step : int, optional
            The step just done; None after an epoch's own checkpoint.
        steps : int, optional
            Steps of an epoch, for the message.
        save : callable, optional
            Saves the checkpoint and returns where (a folder), or None
            when there is nothing to save with.

        Raises
        ------
        TrainingInterrupted
            When a signal was received (the context turns it into one
            line and ``SystemExit``).

        Example
        -------
        >>> stop = GracefulStop()
        >>> stop.stop_here(epoch=1, step=1)  # no signal: nothing happens
        >>> stop.signum = signal.SIGTERM
        >>> stop.stop_here(epoch=1, save=lambda: "save")
        Traceback (most recent call last):
        ...
        lobes.interrupt.TrainingInterrupted: stopped by SIGTERM after epoch 1...
        """
        if not self.requested:
            return
        signum = self.signum if self.signum is not None else signal.SIGINT
        saved_in = None
        if save is not None:
            self._saving = True
            try:
                saved_in = save()
            finally:
                self._saving = False
        raise TrainingInterrupted(
            stop_message(signum, epoch, step, steps, saved_in), signum
        )


def brain_saver(brain, loss):
    """A ``save`` for :meth:`GracefulStop.stop_here` after a training step.

    It saves SpeechBrain's intra-epoch checkpoint as ``Brain._fit_train``
    would after this step: ``Brain.fit_batch`` calls ``on_fit_batch_end``
    before ``_fit_train`` adds the step's loss to ``avg_train_loss``, so
    the loss is added first, and the checkpoint resumes after this step
    with the same running average. Returns the checkpoint folder, or None
    without a checkpointer.

    Arguments
    ---------
    brain : speechbrain.Brain
        The Brain, in ``on_fit_batch_end``.
    loss : torch.Tensor
        The step's loss (``on_fit_batch_end``'s ``loss``).

    Example
    -------
    >>> import tempfile, torch, speechbrain as sb
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> folder = tempfile.mkdtemp()
    >>> brain = sb.Brain({"m": torch.nn.Linear(1, 1)},
    ...                  checkpointer=Checkpointer(folder))
    >>> brain.step, brain.avg_train_loss = 1, 0.0
    >>> brain_saver(brain, torch.tensor(2.0))() == folder
    True
    >>> brain.avg_train_loss
    2.0
    >>> len(brain.checkpointer.list_checkpoints())
    1
    """

    def save():
        brain.avg_train_loss = brain.update_average(  # as _fit_train does
            loss.detach(), brain.avg_train_loss)
        if brain.checkpointer is None:
            return None
        brain._save_intra_epoch_ckpt()
        return str(brain.checkpointer.checkpoints_dir)

    return save
