"""What a recipe run leaves in its folder, written without training: for
tests of benchmarks that start, stop and resume runs."""

import os


def checkpoint_epochs(out, epochs, valid_loss=lambda epoch: 0.4,
                      name="net.ckpt"):
    """Append each epoch's ``train_log.txt`` line to ``out`` and save a
    ``save/CKPT+<epoch>/<name>`` holding the epoch's number, as the recipe
    does at the end of an epoch.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> checkpoint_epochs(out, range(1, 3))
    >>> sorted(os.listdir(os.path.join(out, "save")))
    ['CKPT+1', 'CKPT+2']
    >>> open(os.path.join(out, "train_log.txt")).readlines()[1]
    'epoch: 2, lr: 1e-3 - train loss: 0.5 - valid loss: 0.4\\n'
    """
    for epoch in epochs:
        with open(os.path.join(out, "train_log.txt"), "a") as fout:
            fout.write(f"epoch: {epoch}, lr: 1e-3 - train loss: 0.5 - "
                       f"valid loss: {valid_loss(epoch)}\n")
        ckpt = os.path.join(out, "save", f"CKPT+{epoch}")
        os.makedirs(ckpt)
        with open(os.path.join(ckpt, name), "wb") as fout:
            fout.write(bytes([epoch]))


def epochs_logged(out):
    """How many epochs ``out``'s ``train_log.txt`` holds (0: none)."""
    log = os.path.join(out, "train_log.txt")
    if not os.path.isfile(log):
        return 0
    with open(log) as fin:
        return len(fin.readlines())


def run_stopped_once(seen, stop_after, last, **checkpoint):
    """A fake ``run_recipe``: each start goes on from the epochs its folder
    holds (appended to ``seen``); the first start stops with Ctrl-C after
    epoch ``stop_after``, a later one ends at epoch ``last(overrides)`` and
    scores one utterance. ``checkpoint``: :func:`checkpoint_epochs`'s.

    Example
    -------
    >>> import tempfile
    >>> seen, out = [], tempfile.mkdtemp()
    >>> run = run_stopped_once(seen, 1, lambda overrides: 3)
    >>> try:
    ...     run("recipe", "x.yaml", {"output_folder": out}, 1)
    ... except KeyboardInterrupt:
    ...     print("stopped")
    stopped
    >>> run("recipe", "x.yaml", {"output_folder": out}, 1), seen
    (1.0, [0, 1])
    """
    def run(recipe, yaml, overrides, threads):
        out = overrides["output_folder"]
        done = epochs_logged(out)
        seen.append(done)
        end = stop_after if len(seen) == 1 else last(overrides)
        checkpoint_epochs(out, range(done + 1, end + 1), **checkpoint)
        if len(seen) == 1:
            raise KeyboardInterrupt
        with open(os.path.join(out, "valid_results.csv"), "w") as fout:
            fout.write("snt_id,pesq,estoi,si_sdr\nu1,2.0,0.8,10.0\n")
        return 1.0

    return run
