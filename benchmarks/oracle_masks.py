#!/usr/bin/env python3
"""How far a magnitude mask could go: ideal masks on the mini corpus.

The spectral-mask enhancer multiplies the noisy STFT (32 ms Hamming
windows, 16 ms hop, 512 points at 16 kHz) by a mask in [0, 1] and keeps
the noisy phase. Computed from the clean speech and the noise, two ideal
masks of that form bound what it can reach: the ideal ratio mask
``sqrt(|S|^2 / (|S|^2 + |N|^2))`` and the phase-insensitive ideal
amplitude mask ``min(|S| / |Y|, 1)``. Scored as the recipe scores (PESQ,
eSTOI, SI-SDR against the clean speech), beside the noisy input, on the
validation speakers of the ``small`` mini VoiceBank-DEMAND corpus: the
CR protocol's backbones are judged against these (protocol step 2 in
``recipes/Voicebank/enhance/README.md``)::

    python -m benchmarks.oracle_masks

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import os
import sys
import tempfile

from benchmarks import provenance
from benchmarks.cr_protocol_analysis import SCORES, mean_scores
from benchmarks.paired import REPO, dumps_results, fmt

#: The spectral-mask recipe's STFT at 16 kHz (hparams/enhancement/
#: spectral_mask.yaml: 32 ms Hamming windows, 16 ms hop, 512 points).
N_FFT, HOP = 512, 256
#: The signals scored, in the table's order.
SIGNALS = ("noisy input", "ideal ratio mask", "ideal amplitude mask")


def ideal_masked(noisy, clean):
    """The noisy input through each ideal mask; ``{name: signal}``.

    Example
    -------
    >>> import torch
    >>> clean = torch.sin(torch.arange(16000) / 5.0)
    >>> noisy = clean + 0.3 * torch.randn(16000)
    >>> out = ideal_masked(noisy, clean)
    >>> sorted(out), out["ideal ratio mask"].shape
    (['ideal amplitude mask', 'ideal ratio mask'], torch.Size([16000]))
    >>> def err(x):
    ...     return float((x - clean).pow(2).mean())
    >>> err(out["ideal ratio mask"]) < err(noisy)
    True
    """
    import torch

    window = torch.hamming_window(N_FFT)

    def stft(signal):
        return torch.stft(signal, N_FFT, HOP, window=window,
                          return_complex=True)

    speech, noise, mixture = stft(clean), stft(noisy - clean), stft(noisy)
    masks = {
        "ideal ratio mask": (speech.abs() ** 2 / (
            speech.abs() ** 2 + noise.abs() ** 2 + 1e-12)).sqrt(),
        "ideal amplitude mask": (speech.abs() / (mixture.abs() + 1e-12)
                                 ).clamp(max=1.0),
    }
    return {name: torch.istft(mixture * mask, N_FFT, HOP, window=window,
                              length=noisy.shape[-1])
            for name, mask in masks.items()}


def score_manifest(manifest):
    """Per signal and utterance, the scores against the clean speech."""
    from lobes.data.audio import read_audio
    from lobes.metrics import enhancement_metrics

    items = {name: {} for name in SIGNALS}
    with open(manifest, encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    for row in rows:
        noisy = read_audio(row["noisy_wav"], sample_rate=16000)
        clean = read_audio(row["clean_wav"], sample_rate=16000)
        signals = {"noisy input": noisy, **ideal_masked(noisy, clean)}
        for name, signal in signals.items():
            items[name][row["ID"]] = {
                score: round(float(value), 4) for score, value in
                enhancement_metrics(signal, clean, 16000,
                                    metrics=list(SCORES)).items()}
    return items


def markdown_table(data):
    """The README table: mean scores per signal.

    Example
    -------
    >>> data = {"utterances": 2, "means": {name: {
    ...     "pesq": 2.0, "estoi": 0.9, "si_sdr": 15.0} for name in SIGNALS}}
    >>> print(markdown_table(data).splitlines()[2])
    | noisy input | 2 | 2.00 | 0.900 | 15.00 |
    """
    lines = ["| signal (validation speakers) | utterances | PESQ | eSTOI "
             "| SI-SDR (dB) |", "|---|---:|---:|---:|---:|"]
    for name in SIGNALS:
        means = data["means"][name]
        lines.append(f"| {name} | {data['utterances']} "
                     f"| {fmt(means['pesq'])} | {fmt(means['estoi'], 3)} "
                     f"| {fmt(means['si_sdr'])} |")
    return "\n".join(lines)


def main(argv=None):
    """Score the noisy input and the ideal masks; write the JSON."""
    from lobes.data.mini_corpora import ensure_mini_corpus
    from lobes.data.prepare import prepare_voicebank

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small"))
    parser.add_argument("--out", default=os.path.join(
        REPO, "benchmarks", "results", "oracle_masks.json"))
    args = parser.parse_args(argv)
    block = provenance.start([__file__, *argv],
                             placeholders={args.out: "<out>"},
                             corpus=f"mini VoiceBank-DEMAND ({args.size})")
    root = ensure_mini_corpus("voicebank", args.size)
    manifests = prepare_voicebank(root, tempfile.mkdtemp())
    items = score_manifest(manifests["valid"])
    data = {
        "setup": {"corpus_size": args.size, "split": "valid",
                  "valid_speakers": ["p226", "p287"], "n_fft": N_FFT,
                  "hop": HOP, "window": "hamming"},
        "utterances": len(items["noisy input"]),
        "means": {name: mean_scores(items[name]) for name in SIGNALS},
        "items": items, "provenance": provenance.finish(block),
    }
    with open(args.out, "w", encoding="utf-8") as fout:
        fout.write(dumps_results(provenance.portable(data)))
    print(markdown_table(data))


if __name__ == "__main__":
    main(sys.argv[1:])
