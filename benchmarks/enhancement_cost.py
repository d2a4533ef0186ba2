#!/usr/bin/env python3
"""Parameters, multiply-accumulates and CPU time of the enhancement backbones.

Every VoiceBank enhancement backbone at its recipe size: Conv-TasNet and the
spectral-mask CNN-Transformer (``enhance_model`` of
``recipes/Voicebank/enhance/hparams/{convtasnet,spectral_mask}.yaml``,
loaded with :func:`lobes.overrides.load_hparams`) and CMCR-Net
(``hparams/enhancement/cmcr_net.yaml``) with and without each ablation.

- Parameters: all parameters of ``enhance_model`` (what runs at inference;
  CR and the branch pull add none).
- MACs per second of 16 kHz audio: one forward pass over a 4 s input
  (batch 1, eval mode) under ``torch.utils.flop_counter.FlopCounterMode``,
  MACs = FLOPs / 2, divided by 4. FlopCounterMode counts matrix products
  and convolutions (transposed ones included). What it misses is added:
  recurrent layers whose kernel it does not see (on CPU, ``nn.LSTM`` runs
  as ``mkldnn_rnn_layer``: 0 FLOPs counted; ``nn.GRU`` decomposes into
  counted matrix products) get ``gates x hidden x (input + hidden)`` MACs
  per step, layer and direction, from their sizes through forward hooks,
  only when nothing was counted inside them; CPU's fused scaled dot-product
  attention kernel gets the formula FlopCounterMode uses for the GPU
  kernels. The count runs with autograd on, so that ``nn.MultiheadAttention``
  takes its decomposed path rather than the uncounted inference fast path.
  Not counted for any model: element-wise work (activations, norms,
  softmax, masking) and the FFTs of the STFT/iSTFT (about 0.6M real
  multiplications per second each at 512 points and a 256 hop).
- CPU ms per second of audio: ``torch.no_grad`` forward of the 4 s input,
  one thread, median of ``--runs`` runs after a warm-up run.

Prints a markdown table and writes JSON (default
``benchmarks/results/enhancement_cost.json``)::

    python -m benchmarks.enhancement_cost           # about a minute

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_flop_count,
)

from benchmarks import provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE_HPARAMS = os.path.join(REPO, "recipes", "Voicebank", "enhance",
                              "hparams")
CMCR_FRAGMENT = os.path.join(REPO, "hparams", "enhancement", "cmcr_net.yaml")

#: (row name, recipe YAML or None for the CMCR-Net fragment, overrides).
BACKBONES = (
    ("Conv-TasNet", "convtasnet.yaml", {}),
    ("spectral mask (CNN-Transformer)", "spectral_mask.yaml", {}),
    ("CMCR-Net", None, {}),
    ("CMCR-Net, no contrastive attention", None,
     {"contrastive_attention": False}),
    ("CMCR-Net, no interactive attention", None,
     {"interactive_attention": False}),
    ("CMCR-Net, neither attention", None,
     {"contrastive_attention": False, "interactive_attention": False}),
)

#: Gates per recurrent mode.
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def recurrent_macs(rnn, steps):
    """MACs of ``steps`` (batch x time) steps of an ``nn.RNNBase``.

    Example
    -------
    >>> recurrent_macs(torch.nn.LSTM(10, 20), steps=3)
    7200
    >>> recurrent_macs(torch.nn.GRU(10, 20, num_layers=2,
    ...                             bidirectional=True), steps=1)
    10800
    """
    directions = 2 if rnn.bidirectional else 1
    recurrent = rnn.proj_size or rnn.hidden_size
    per_step = 0
    for layer in range(rnn.num_layers):
        inputs = rnn.input_size if layer == 0 else recurrent * directions
        gates = RNN_GATES[rnn.mode] * rnn.hidden_size * (inputs + recurrent)
        projection = rnn.hidden_size * rnn.proj_size
        per_step += directions * (gates + projection)
    return per_step * steps


def _sdpa_macs_mapping():
    """FlopCounterMode formula for CPU's fused attention kernel, if any."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu",
                 None)
    if op is None:
        return {}

    def flops(query_shape, key_shape, value_shape, *args, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: flops}


def count_macs(model, noisy):
    """MACs of one forward pass, with the recurrent layers' added.

    Arguments
    ---------
    model : torch.nn.Module
        Called as ``model(noisy)``.
    noisy : torch.Tensor
        The input.

    Returns
    -------
    dict
        ``macs`` (total), ``counted_macs`` (FlopCounterMode's FLOPs / 2)
        and ``recurrent_macs_added`` (from the hooks).

    Example
    -------
    >>> lstm = torch.nn.LSTM(10, 20, batch_first=True)
    >>> class Last(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn, self.out = lstm, torch.nn.Linear(20, 1)
    ...     def forward(self, x):
    ...         return self.out(self.rnn(x)[0])
    >>> macs = count_macs(Last(), torch.randn(2, 5, 10))
    >>> macs["recurrent_macs_added"] == recurrent_macs(lstm, 10)
    True
    >>> macs["counted_macs"]  # the linear layer: 2 x 5 x 20
    200
    """
    counter = FlopCounterMode(display=False,
                              custom_mapping=_sdpa_macs_mapping())
    added = []
    before = {}

    def pre_hook(module, args):
        before[id(module)] = counter.get_total_flops()

    def post_hook(module, args, output):
        if counter.get_total_flops() > before.pop(id(module)):
            return  # the counter saw its matrix products
        data = args[0]
        if isinstance(data, torch.nn.utils.rnn.PackedSequence):
            steps = data.data.shape[0]
        else:  # [B, T, I], [T, B, I] or unbatched [T, I]
            steps = data.shape[:-1].numel()
        added.append(recurrent_macs(module, steps))

    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.RNNBase):
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
    try:
        with torch.enable_grad(), counter:
            model(noisy)
    finally:
        for handle in handles:
            handle.remove()
    counted = counter.get_total_flops() // 2
    return {
        "macs": counted + sum(added),
        "counted_macs": counted,
        "recurrent_macs_added": sum(added),
    }


def cpu_seconds(model, noisy, runs):
    """Median wall time of ``runs`` no-grad forward passes (after one)."""
    times = []
    with torch.no_grad():
        model(noisy)
        for _ in range(runs):
            start = time.perf_counter()
            model(noisy)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _inside(folder):
    """Run inside ``folder`` (recipe YAMLs create relative folders)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def build_model(recipe, overrides, work):
    """``enhance_model`` of a recipe YAML, or of the CMCR-Net fragment."""
    with _inside(work):
        if recipe is None:
            from hyperpyyaml import load_hyperpyyaml

            with open(CMCR_FRAGMENT, encoding="utf-8") as fin:
                return load_hyperpyyaml(fin, overrides)["enhance_model"]
        from lobes.overrides import load_hparams

        path = os.path.join(RECIPE_HPARAMS, recipe)
        return load_hparams(path, overrides)["enhance_model"]


def measure(name, recipe, overrides, args, work):
    """One table row."""
    source = recipe or os.path.relpath(CMCR_FRAGMENT, REPO)
    row = {"backbone": name, "yaml": source, "overrides": overrides}
    try:
        model = build_model(recipe, overrides, work).eval()
    except Exception as err:  # a YAML under rewrite must not stop the rest
        row["error"] = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        return row
    generator = torch.Generator().manual_seed(0)
    samples = int(args.seconds * args.sample_rate)
    noisy = 0.1 * torch.randn(1, samples, generator=generator)
    macs = count_macs(model, noisy)
    row.update(
        parameters=sum(p.numel() for p in model.parameters()),
        gmacs_per_second=macs["macs"] / args.seconds / 1e9,
        recurrent_gmacs_per_second=(
            macs["recurrent_macs_added"] / args.seconds / 1e9
        ),
        cpu_ms_per_second=(
            1000 * cpu_seconds(model, noisy, args.runs) / args.seconds
        ),
    )
    return row


def markdown_table(results):
    """The README table of a results file (``benchmarks.report``).

    Example
    -------
    >>> print(markdown_table({"rows": [{"backbone": "x", "parameters": 2e6,
    ...     "gmacs_per_second": 1.0, "recurrent_gmacs_per_second": 0.0,
    ...     "cpu_ms_per_second": 12.34}]}))
    | backbone | parameters (M) | GMAC/s | of which recurrent ... |
    |---|---:|---:|---:|---:|
    | x | 2.000 | 1.000 | 0.000 | 12.3 |
    """
    return markdown(results["rows"])


def markdown(rows):
    """The rows as a markdown table."""
    lines = [
        "| backbone | parameters (M) | GMAC/s | of which recurrent "
        "(hooks) | CPU ms per s of audio (1 thread) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backbone']} | not loaded: {row['error']} "
                         "| | | |")
            continue
        lines.append(
            f"| {row['backbone']} | {row['parameters'] / 1e6:.3f} "
            f"| {row['gmacs_per_second']:.3f} "
            f"| {row['recurrent_gmacs_per_second']:.3f} "
            f"| {row['cpu_ms_per_second']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="input length (METHODS: 4 s segments)")
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        default=os.path.join(REPO, "benchmarks", "results",
                             "enhancement_cost.json"),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    run = provenance.start(None if argv is None else [__file__, *argv],
                           threads=args.threads,
                           corpus="none (random 16 kHz input)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="enhancement_cost_") as work:
        for name, recipe, overrides in BACKBONES:
            print(f"Measuring {name}", flush=True)
            rows.append(measure(name, recipe, overrides, args, work))
    report = {
        "provenance": provenance.finish(run),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        },
        "settings": dict(vars(args), out=os.path.relpath(args.out, REPO)),
        "rows": rows,
        "total_s": time.perf_counter() - started,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump(report, fout, indent=2)
    print()
    print(markdown(rows))
    print(f"\nTotal {report['total_s']:.0f} s; JSON: {args.out}")
    return report


if __name__ == "__main__":
    main()
