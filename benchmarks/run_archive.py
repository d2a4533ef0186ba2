"""A trained run's best checkpoint in one small committed file, and back.

A long benchmark (``benchmarks.cr_protocol``) forks trained backbones
into many fine-tunes over several sessions, each on a fresh machine: its
run folders do not survive, and training a backbone again costs up to an
hour of CPU. :func:`archive_run` keeps what a warm start
(``--init_from``) or a reference model needs of a finished run: the
modules' weights of its best checkpoint (lowest validation loss), its
``hyperparams.yaml`` and that checkpoint's ``CKPT.yaml``, as one
``.safetensors`` file (the YAML text in its metadata; this machine's run
folder, repository and corpus cache as placeholders).
:func:`restore_run` writes them back as a run folder that
:func:`lobes.runs.load_trained_run` (and so ``init_from``) reads as the
original: the same weights, built from the same YAML.

Authors
 * noise-robust-sb contributors 2025
"""

import json
import os

from benchmarks.provenance import REPO, file_sha256

#: The checkpoint folder a restored run's weights go to.
RESTORED_CHECKPOINT = "CKPT+archived"


def _roots(folder):
    """This machine's paths an archive names by placeholders, longest
    first (a run folder may lie in the repository)."""
    cache = os.environ.get("NRSB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "noise_robust_sb")
    roots = {"<run folder>": os.path.abspath(folder), "<repo>": REPO,
             "<cache>": os.path.abspath(cache)}
    return sorted(roots.items(), key=lambda item: -len(item[1]))


def _placeholders(text, folder):
    for name, root in _roots(folder):
        text = text.replace(root, name)
    return text


def _expanded(text, folder):
    for name, root in _roots(folder):
        text = text.replace(name, root)
    return text


def archive_run(folder, path, modules):
    """Keep a finished run's best checkpoint of ``modules`` in ``path``.

    Arguments
    ---------
    folder : str
        The run's ``output_folder`` (``hyperparams.yaml``, ``save/``).
    path : str
        The ``.safetensors`` file to write (its folder is made).
    modules : list of str
        Checkpointed modules to keep (``<name>.ckpt``), e.g.
        ``["enhance_model"]``.

    Returns
    -------
    str
        The archive's SHA-256.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> run = tempfile.mkdtemp()
    >>> _ = open(os.path.join(run, "hyperparams.yaml"), "w").write(
    ...     f"out: {run}/x\\n")
    >>> net = torch.nn.Linear(2, 2)
    >>> ckpt = Checkpointer(os.path.join(run, "save"), {"net": net})
    >>> _ = ckpt.save_checkpoint(meta={"loss": 1.0})
    >>> path = os.path.join(tempfile.mkdtemp(), "run.safetensors")
    >>> len(archive_run(run, path, ["net"]))
    64
    >>> again = os.path.join(tempfile.mkdtemp(), "run")
    >>> restore_run(path, again)
    ['net']
    >>> open(os.path.join(again, "hyperparams.yaml")).read() == \\
    ...     f"out: {again}/x\\n"
    True
    >>> state = torch.load(os.path.join(again, "save", RESTORED_CHECKPOINT,
    ...                                 "net.ckpt"))
    >>> torch.equal(state["weight"], net.weight)
    True
    """
    import torch
    from safetensors.torch import save_file

    from lobes.runs import best_checkpoint

    checkpoint = best_checkpoint(folder)
    tensors = {}
    for name in modules:
        state = torch.load(checkpoint.paramfiles[name], map_location="cpu",
                           weights_only=True)
        for key, tensor in state.items():
            tensors[f"{name}/{key}"] = tensor.detach().clone().contiguous()
    with open(os.path.join(folder, "hyperparams.yaml"),
              encoding="utf-8") as fin:
        hparams = _placeholders(fin.read(), folder)
    with open(os.path.join(checkpoint.path, "CKPT.yaml"),
              encoding="utf-8") as fin:
        meta = fin.read()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={
        "hyperparams.yaml": hparams, "CKPT.yaml": meta,
        "modules": json.dumps(list(modules)),
        "checkpoint": os.path.basename(str(checkpoint.path)),
    })
    return file_sha256(path)


def restore_run(path, folder):
    """Write an archive back as a run folder; the modules it holds.

    ``folder`` gets ``hyperparams.yaml`` (placeholders replaced by this
    machine's paths and ``folder``) and ``save/CKPT+archived/`` with each
    module's ``<name>.ckpt`` and the original ``CKPT.yaml`` (see
    :func:`archive_run` for an example).
    """
    import torch
    from safetensors import safe_open

    with safe_open(path, framework="pt") as archive:
        meta = archive.metadata()
        modules = json.loads(meta["modules"])
        states = {name: {} for name in modules}
        for key in archive.keys():
            name, _, param = key.partition("/")
            states[name][param] = archive.get_tensor(key)
    checkpoint = os.path.join(folder, "save", RESTORED_CHECKPOINT)
    os.makedirs(checkpoint, exist_ok=True)
    for name, state in states.items():
        torch.save(state, os.path.join(checkpoint, f"{name}.ckpt"))
    with open(os.path.join(checkpoint, "CKPT.yaml"), "w",
              encoding="utf-8") as fout:
        fout.write(meta["CKPT.yaml"])
    with open(os.path.join(folder, "hyperparams.yaml"), "w",
              encoding="utf-8") as fout:
        fout.write(_expanded(meta["hyperparams.yaml"], folder))
    return modules


#: The files of an unfinished run's folder that its resumption needs,
#: besides its checkpoints: the epochs logged so far (the protocol reads
#: them) and what the run was started with, with the wall time of its
#: starts so far (benchmarks.paired.timed_run).
UNFINISHED_FILES = ("train_log.txt", "benchmark_run.json")


def archive_unfinished(folder, path, max_bytes=20 << 20):
    """Keep an unfinished run's checkpoints in one ``.safetensors`` file,
    so that it goes on from them on another machine; whether it was kept.

    Every ``save/CKPT+*/`` folder (the last one and the best one: both
    decide how the run goes on and ends) and :data:`UNFINISHED_FILES`, each
    file's bytes as a ``uint8`` tensor named by its path in the run folder
    (text with this machine's paths as placeholders). A run whose files
    come to more than ``max_bytes`` is not kept.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(run, "save", "CKPT+1"))
    >>> _ = open(os.path.join(run, "save", "CKPT+1", "net.ckpt"),
    ...          "wb").write(bytes(range(5)))
    >>> _ = open(os.path.join(run, "train_log.txt"), "w").write(
    ...     f"epoch: 1 in {run}\\n")
    >>> path = os.path.join(tempfile.mkdtemp(), "run.safetensors")
    >>> archive_unfinished(run, path)
    True
    >>> again = os.path.join(tempfile.mkdtemp(), "run")
    >>> sorted(restore_unfinished(path, again))
    ['save/CKPT+1/net.ckpt', 'train_log.txt']
    >>> open(os.path.join(again, "save", "CKPT+1", "net.ckpt"),
    ...      "rb").read() == bytes(range(5))
    True
    >>> open(os.path.join(again, "train_log.txt")).read() == \\
    ...     f"epoch: 1 in {again}\\n"
    True
    >>> archive_unfinished(run, path, max_bytes=4)
    False
    """
    import torch
    from safetensors.torch import save_file

    names = [name for name in UNFINISHED_FILES
             if os.path.isfile(os.path.join(folder, name))]
    save = os.path.join(folder, "save")
    for checkpoint in sorted(os.listdir(save)) if os.path.isdir(save) else []:
        if checkpoint.startswith("CKPT+"):
            names += [os.path.join("save", checkpoint, name) for name in
                      sorted(os.listdir(os.path.join(save, checkpoint)))]
    if sum(os.path.getsize(os.path.join(folder, n)) for n in names) > (
            max_bytes):
        return False
    tensors, text = {}, []
    for name in names:
        with open(os.path.join(folder, name), "rb") as fin:
            data = fin.read()
        if name in UNFINISHED_FILES:
            data = _placeholders(data.decode("utf-8"), folder).encode()
            text.append(name)
        tensors[name] = torch.frombuffer(bytearray(data) or bytearray(1),
                                         dtype=torch.uint8)[:len(data)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={"unfinished run": json.dumps(text)})
    return True


def unfinished_path(models, name):
    """Where Ctrl-C keeps the checkpoints of the run ``name`` it stopped:
    a file in ``models`` (None: not kept).

    Example
    -------
    >>> unfinished_path("/m", "test/full/seed4")
    '/m/test_full_seed4.unfinished.safetensors'
    >>> unfinished_path(None, "test/full/seed4") is None
    True
    """
    if not models:
        return None
    return os.path.join(models,
                        name.replace("/", "_") + ".unfinished.safetensors")


def keep_stopped(runs):
    """Keep, for another machine, each stopped run of ``runs`` (pairs of
    its folder and :func:`unfinished_path`) that wrote a checkpoint
    (:func:`archive_unfinished`); the files written.

    Example
    -------
    >>> import tempfile
    >>> run, empty = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(run, "save", "CKPT+1"))
    >>> models = tempfile.mkdtemp()
    >>> kept = keep_stopped([(run, unfinished_path(models, "a")),
    ...                      (empty, unfinished_path(models, "b"))])
    >>> [os.path.basename(path) for path in kept]
    ['a.unfinished.safetensors']
    """
    kept = []
    for folder, path in runs:
        save = os.path.join(folder, "save")
        if path and os.path.isdir(save) and any(
                name.startswith("CKPT+") for name in os.listdir(save)):
            if archive_unfinished(folder, path):
                kept.append(path)
    return kept


def resume_kept(path, folder):
    """Write the run kept in ``path`` (:func:`keep_stopped`) back to
    ``folder`` when the run has not started here; whether it was.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(run, "save", "CKPT+1"))
    >>> _ = open(os.path.join(run, "save", "CKPT+1", "net.ckpt"), "w")
    >>> path = unfinished_path(tempfile.mkdtemp(), "a")
    >>> resume_kept(path, run)  # nothing kept
    False
    >>> keep_stopped([(run, path)]) == [path]
    True
    >>> elsewhere = os.path.join(tempfile.mkdtemp(), "run")
    >>> resume_kept(path, elsewhere)
    True
    >>> resume_kept(path, elsewhere)  # started here: its own checkpoints
    False
    """
    if not (path and os.path.isfile(path)) or os.path.isdir(
            os.path.join(folder, "save")):
        return False
    restore_unfinished(path, folder)
    return True


def discard_kept(path):
    """Delete a kept run's file once the run has finished: its record is
    all that is kept.

    Example
    -------
    >>> discard_kept(None)
    """
    if path and os.path.isfile(path):
        os.remove(path)


def restore_unfinished(path, folder):
    """Write an :func:`archive_unfinished` file back as a run folder (the
    placeholders replaced by this machine's paths); the files written."""
    from safetensors import safe_open

    written = []
    with safe_open(path, framework="pt") as archive:
        text = json.loads(archive.metadata()["unfinished run"])
        for name in archive.keys():
            data = archive.get_tensor(name).numpy().tobytes()
            if name in text:
                data = _expanded(data.decode("utf-8"), folder).encode()
            target = os.path.join(folder, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fout:
                fout.write(data)
            written.append(name)
    return written
