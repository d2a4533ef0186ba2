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
