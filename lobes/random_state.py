"""Exact resume: the random state of training, checkpointed.

An interrupted run resumed by the same command must give the same
per-epoch losses as an uninterrupted one. SpeechBrain checkpoints the
modules, the optimiser, the epoch counter, the Brain's ``step`` and
``avg_train_loss`` and the train loader's position in its epoch
(``SaveableDataLoader``: the number of batches yielded; on resume the
sampler is fast-forwarded by that many batches). It does not checkpoint
the global random generators, which draw during training:

- dropout, and every ``torch.rand``/``torch.randn`` without a generator
  (PatchNCE's random patch positions, SpeechBrain's augmenters): torch's
  CPU generator and each CUDA device's;
- anything using Python's ``random`` or NumPy's global generator (the
  package's own training code does not, but SpeechBrain's and third-party
  code may).

:class:`RandomState` saves and restores all of these (Python, NumPy,
torch CPU and every CUDA generator). Add it to the checkpointer's
recoverables: at an end-of-epoch or intra-epoch checkpoint it saves the
state of that moment, and recovery (``Brain.on_fit_start``) puts it back,
after the model was built and the YAML's ``seed_everything`` ran.

What is already deterministic, and needs no saved state:

- the order of training examples: SpeechBrain's
  ``ReproducibleRandomSampler`` (``shuffle: True``) and, under DDP,
  ``DistributedSamplerWrapper`` draw from a private generator seeded with
  ``seed + epoch`` at each epoch (``set_epoch``), and ``SaveableDataLoader``
  skips the batches already seen;
- the random crops, speed perturbation and dynamic mixing of separation
  (``lobes.data.separation_data``: a generator per item seeded with
  ``(seed, epoch, item id)``), the audio-visual crops and remixing
  (``lobes.data.av_prepare``: ``(seed, epoch, index)``), the enhancement
  crops (``lobes.data.enhancement_data.fixed_segment``: seeded by the
  utterance id) and the mini corpora (seeded generators);
- curriculum and noise-tracker states are recoverables of their own in the
  YAMLs' checkpointers.

One draw is not: each time a ``DataLoader`` starts iterating it draws its
workers' base seed from its ``generator``, by default torch's global one.
A run resumed mid-epoch starts iterating that epoch a second time, so it
would draw once more from the global generator than an uninterrupted run
and every later dropout mask would differ. The train loader therefore gets
a private generator, reseeded from ``(seed, epoch)`` at each epoch
(:func:`seed_loader_generator`), so that starting an epoch draws nothing
from the global generators and the workers' seeds of an epoch are the
same however often it is started.
"""

import random
import zlib

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


def _python_state():
    version, internal, gauss = random.getstate()
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss": gauss,
    }


def _set_python_state(state):
    internal = tuple(int(x) for x in state["internal"].tolist())
    random.setstate((int(state["version"]), internal, state["gauss"]))


def _numpy_state():
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "kind": str(kind),
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state):
    np.random.set_state((
        state["kind"],
        state["key"].numpy().astype(np.uint32),
        int(state["pos"]),
        int(state["has_gauss"]),
        float(state["cached_gaussian"]),
    ))


def capture_random_state():
    """The state of every global random generator, as plain data.

    Returns
    -------
    dict
        ``python``, ``numpy`` (dicts of tensors and numbers), ``torch``
        (a uint8 tensor) and ``cuda`` (one uint8 tensor per device; empty
        without CUDA): loadable with ``torch.load(weights_only=True)``.

    Example
    -------
    >>> state = capture_random_state()
    >>> sorted(state)
    ['cuda', 'numpy', 'python', 'torch']
    >>> first = (random.random(), np.random.rand(), torch.rand(1))
    >>> restore_random_state(state)
    >>> (random.random(), np.random.rand(), torch.rand(1)) == first
    True
    """
    cuda = []
    if torch.cuda.is_available():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": _python_state(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_random_state(state):
    """Put back a state of :func:`capture_random_state`.

    CUDA states are restored when CUDA is available and as many devices
    are visible as were saved (a resume on other hardware cannot replay
    the same CUDA draws anyway; the CPU state is still restored).

    Example
    -------
    >>> state = capture_random_state()
    >>> first = torch.randn(3)
    >>> restore_random_state(state)
    >>> bool(torch.equal(torch.randn(3), first))
    True
    """
    _set_python_state(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(
                [s.to(torch.uint8).cpu() for s in cuda]
            )


@register_checkpoint_hooks
class RandomState:
    """A recoverable that saves and restores the global random generators.

    Python's ``random``, NumPy's global generator, torch's CPU generator
    and every CUDA generator (see the module's docstring for what else
    shapes training and why it needs no saved state). The file is written
    with ``torch.save`` and holds only tensors, numbers, strings and
    lists, so that it loads with ``torch.load(weights_only=True)``.

    Add it to a SpeechBrain ``Checkpointer``'s recoverables (the YAML's
    ``checkpointer``, or ``checkpointer.add_recoverable("random_state",
    RandomState())``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "random_state.ckpt")
    >>> state = RandomState()
    >>> state.save(path)
    >>> first = torch.rand(2), np.random.rand(2).tolist(), random.random()
    >>> state.load(path, end_of_epoch=False)
    >>> again = torch.rand(2), np.random.rand(2).tolist(), random.random()
    >>> bool(torch.equal(first[0], again[0])), first[1:] == again[1:]
    (True, True)
    """

    @mark_as_saver
    def save(self, path):
        """Write the generators' state to ``path``."""
        torch.save(capture_random_state(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restore the generators from ``path`` (any checkpoint kind).

        An end-of-epoch checkpoint restores the state after that epoch's
        validation, an intra-epoch one the state after its last step: in
        both cases the state an uninterrupted run had at that point.
        """
        del end_of_epoch
        restore_random_state(
            torch.load(path, map_location="cpu", weights_only=True)
        )


def loader_seed(seed, epoch):
    """The seed of the train loader's generator in ``epoch``.

    Example
    -------
    >>> loader_seed(1234, 2) == loader_seed(1234, 2) != loader_seed(1234, 3)
    True
    """
    return zlib.crc32(f"loader:{int(seed)}:{int(epoch)}".encode())


def seed_loader_generator(generator, seed, epoch):
    """Reseed a train ``DataLoader``'s private generator for ``epoch``.

    Starting to iterate a ``DataLoader`` draws its workers' base seed from
    its ``generator``. With a private generator reseeded at each epoch,
    that draw is the same for an epoch started once or resumed, and no
    draw comes from torch's global generator (dropout's).

    Arguments
    ---------
    generator : torch.Generator
        The generator given to the train loader (``generator=`` in its
        loader options).
    seed : int
        The experiment's seed.
    epoch : int
        The epoch about to start.

    Returns
    -------
    torch.Generator
        ``generator``, reseeded.

    Example
    -------
    >>> from torch.utils.data import DataLoader
    >>> gen = torch.Generator()
    >>> loader = DataLoader(range(4), batch_size=2, generator=gen)
    >>> seed_loader_generator(gen, 1234, 1) is gen
    True
    >>> state = torch.get_rng_state()
    >>> batches = [b.tolist() for b in loader]
    >>> bool(torch.equal(torch.get_rng_state(), state))  # no global draw
    True
    """
    generator.manual_seed(loader_seed(seed, epoch))
    return generator


@register_checkpoint_hooks
class EpochStatistics:
    """A recoverable for the statistics a Brain averages over an epoch.

    A run resumed in the middle of an epoch gets back SpeechBrain's
    ``avg_train_loss`` (the Brain's own recoverable) but not the other
    statistics of the epoch's first steps (``RecipeBrain.stage_stats``, a
    :class:`lobes.metrics.MetricAverager`): without them the epoch's
    logged statistics would average only the steps after the resume. This
    saves the averager's sums and counts in an intra-epoch checkpoint and
    puts them back when resuming from one; an end-of-epoch checkpoint
    restores nothing (the next epoch starts afresh). The Brain must then
    keep them: its ``on_stage_start`` must not reset ``stage_stats`` when
    a training stage starts with ``self.step > 0`` (a resumed epoch).

    Arguments
    ---------
    brain : object
        The Brain (or any object) holding the averager.
    attribute : str
        The averager's attribute (``stage_stats``).
    fields : tuple of str
        The averager's attributes to save.

    Example
    -------
    >>> import os, tempfile
    >>> from types import SimpleNamespace
    >>> from lobes.metrics import MetricAverager
    >>> brain = SimpleNamespace(stage_stats=MetricAverager())
    >>> brain.stage_stats.add("si_snr", 3.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "epoch_statistics.ckpt")
    >>> EpochStatistics(brain).save(path)
    >>> brain.stage_stats = MetricAverager()
    >>> EpochStatistics(brain).load(path, end_of_epoch=False)
    >>> brain.stage_stats.summarize()
    {'si_snr': 3.0}
    """

    def __init__(self, brain, attribute="stage_stats",
                 fields=("sums", "counts", "nans", "utterances")):
        self.brain = brain
        self.attribute = attribute
        self.fields = tuple(fields)

    @mark_as_saver
    def save(self, path):
        """Write the averager's fields (numbers and str-keyed dicts)."""
        averager = getattr(self.brain, self.attribute, None)
        state = {
            name: getattr(averager, name)
            for name in self.fields if hasattr(averager, name)
        }
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restore the fields from an intra-epoch checkpoint only."""
        if end_of_epoch:
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        averager = getattr(self.brain, self.attribute)
        for name, value in state.items():
            setattr(averager, name, value)
