"""MCEM speed: the batched MCEM against the frame-by-frame reference.

The separation step of the AV-VAE recipe timed on the mini AV corpus's
test mixtures (:func:`speed_benchmark`), and its table
(:func:`speed_table`, for ``python -m benchmarks.report``);
``python -m benchmarks.av_vae_benchmark --speed_only`` runs it.

Authors
 * noise-robust-sb contributors 2025
"""

import os
import time

import torch

from lobes.models.av_features import SineSTFT
from lobes.models.av_vae import AVCVAE
from lobes.models.mcem import MCEM
from lobes.models.mcem_reference import mcem_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def speed_lines(speed):
    """The speed table of the batched MCEM against the frame-by-frame one.

    Example
    -------
    >>> row = {"label": "x", "audio_seconds": 2.0, "wall_seconds": 1.0,
    ...        "seconds_per_audio_second": 0.5}
    >>> print(speed_lines({"batched": row, "speedup": 9.0,
    ...                    "max_relative_difference": 1e-16}))
    | MCEM implementation | audio (s) | wall (s) | s per s of audio |
    |---|---:|---:|---:|
    | x | 2.0 | 1.00 | 0.500 |
    <BLANKLINE>
    Speed-up of the batched code on the same mixture: 9.0x (max relative
    difference of the estimates 1.0e-16)
    """
    lines = [
        "| MCEM implementation | audio (s) | wall (s) | s per s of audio |",
        "|---|---:|---:|---:|",
    ]
    for key in ("reference", "batched", "batched_all"):
        if key in speed:
            row = speed[key]
            lines.append(
                f"| {row['label']} | {row['audio_seconds']:.1f} | "
                f"{row['wall_seconds']:.2f} | "
                f"{row['seconds_per_audio_second']:.3f} |"
            )
    if "speedup" in speed:
        lines.append(
            f"\nSpeed-up of the batched code on the same mixture: "
            f"{speed['speedup']:.1f}x (max relative\ndifference of the "
            f"estimates {speed['max_relative_difference']:.1e})"
        )
    return "\n".join(lines)


def speed_table(results):
    """The README table of ``--speed_only`` (``benchmarks.report``).

    Example
    -------
    >>> row = {"label": "x", "audio_seconds": 2.0, "wall_seconds": 1.0,
    ...        "seconds_per_audio_second": 0.5}
    >>> speed_table({"speed": {"batched": row}}).splitlines()[-1]
    '| x | 2.0 | 1.00 | 0.500 |'
    """
    return speed_lines(results["speed"])


def speed_benchmark(corpus_root, em_iterations, quick=False):
    """Batched versus frame-by-frame MCEM on the same input and draws."""
    from lobes.data.av_prepare import prepare_ntcd_timit
    from lobes.separation_mcem import (
        lips_batch,
        load_test_mixtures,
        stft_batch,
    )

    save = os.path.join(REPO, "benchmarks", "results", "av_vae_prep",
                        os.path.basename(corpus_root))  # fmt: skip
    manifests = prepare_ntcd_timit(corpus_root, save)
    items = load_test_mixtures(manifests["mix_test"])
    stft = SineSTFT(1024, 256)
    torch.manual_seed(0)
    pixels = int(items[0].lips[0][0].numel())
    vae = AVCVAE(513, 32, 128, pixels, 512, 128).eval()
    mcem = MCEM(num_iterations=em_iterations, num_mh_steps=40, burn_in=30,
                tolerance=0.0)  # fmt: skip
    if quick:
        mcem = MCEM(num_iterations=1, num_mh_steps=4, burn_in=2)
    one = items[:1]
    spec, mask, _ = stft_batch([i.mixture for i in one], stft)
    lips = lips_batch(one, spec.shape[-1], stft, 16000)
    audio = one[0].mixture.numel() / 16000
    vae64 = vae.double()
    runs = {}
    for name, function in (("batched", None), ("reference", mcem_reference)):
        generator = torch.Generator().manual_seed(7)
        start = time.perf_counter()
        if function is None:
            result = mcem(vae64, spec.to(torch.cdouble), 2,
                          lips=lips.double(), frame_mask=mask,
                          generator=generator)  # fmt: skip
        else:
            result = function(mcem, vae64, spec.to(torch.cdouble), 2,
                              lips=lips.double(), frame_mask=mask,
                              generator=generator)  # fmt: skip
        runs[name] = (time.perf_counter() - start, result)
    fast, slow = runs["batched"][1], runs["reference"][1]
    scale = slow.sources.abs().max()
    difference = float((fast.sources - slow.sources).abs().max() / scale)
    if difference > 1e-6:
        raise RuntimeError(
            f"batched and reference MCEM differ by {difference:.2e}"
        )
    speed = {
        "em_iterations": mcem.num_iterations,
        "mh_steps": mcem.num_mh_steps,
        "max_relative_difference": difference,
        "speedup": runs["reference"][0] / runs["batched"][0],
    }
    for name, label in (("reference", "frame by frame, 1 mixture, float64"),
                        ("batched", "batched, 1 mixture, float64")):
        speed[name] = {
            "label": label,
            "audio_seconds": audio,
            "wall_seconds": runs[name][0],
            "seconds_per_audio_second": runs[name][0] / audio,
        }
    vae32 = vae.float()
    spec, mask, _ = stft_batch([i.mixture for i in items], stft)
    lips = lips_batch(items, spec.shape[-1], stft, 16000)
    start = time.perf_counter()
    mcem(vae32, spec, 2, lips=lips, frame_mask=mask,
         generator=torch.Generator().manual_seed(7))  # fmt: skip
    wall = time.perf_counter() - start
    audio = sum(i.mixture.numel() for i in items) / 16000
    speed["batched_all"] = {
        "label": f"batched, all {len(items)} test mixtures, float32",
        "audio_seconds": audio,
        "wall_seconds": wall,
        "seconds_per_audio_second": wall / audio,
    }
    return speed
