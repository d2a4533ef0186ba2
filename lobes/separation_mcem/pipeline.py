"""Every method on every test mixture: separate, score, write the results.

:class:`Separators` holds the methods of :data:`METHODS` that the hparams
make available (trained models loaded, the NMF dictionary learned);
:func:`evaluate_methods` runs each on the test mixtures and writes
``results.csv`` and ``summary.json``.

Authors
 * noise-robust-sb contributors 2025
"""

import copy
import json
import math
import os
import time

import numpy as np
import torch

from lobes.brains.base import write_results_csv
from lobes.data.audio import write_audio
from lobes.data.lip_input import MIN_LIP_MOTION, lip_motion
from lobes.errors import HparamsError
from lobes.separation_mcem.loading import load_trained
from lobes.separation_mcem.methods import (
    fit_lips_to_model,
    learn_speech_dictionary,
    separate_nmf,
    separate_supervised,
    separate_vae,
)
from lobes.separation_mcem.scoring import SCORES, evaluate

#: Methods :class:`Separators` knows, in report order.
METHODS = ("mixture", "av_vae", "a_vae", "nmf", "supervised")


def _write_wavs(folder, name, estimates, sample_rate):
    """``<folder>/<name>_s<j>.wav`` for ``[J, T]``, one gain for all."""
    peak = float(estimates.abs().max()) if estimates.numel() else 0.0
    scale = 0.99 / peak if peak > 0.99 else 1.0
    paths = []
    for j in range(estimates.shape[0]):
        path = os.path.join(folder, f"{name}_s{j + 1}.wav")
        write_audio(path, estimates[j] * scale, sample_rate)
        paths.append(path)
    return paths


class Separators:
    """Every method of :data:`METHODS` that the hparams make available.

    Arguments
    ---------
    hparams : dict
        ``separate.yaml``: ``methods``, ``av_vae_folder``, ``a_vae_folder``,
        ``supervised_folder``, ``mcem``, ``nmf``, ``stft``, ``sample_rate``,
        ``seed``, ``av_vae_iterations`` and ``a_vae_iterations`` (EM
        iterations of one method, ``None``: the MCEM's), optionally
        ``lips_fallback`` (AV-VAE falls back to the A-VAE of
        ``a_vae_folder`` on frames its lips do not explain, and on whole
        items whose lips move less than ``min_lip_motion``, default
        :data:`lobes.data.lip_input.MIN_LIP_MOTION`, with one notice line
        each; default False, separate.yaml's is True), and for the NMF
        dictionary ``nmf_settings`` (``speech_rank``,
        ``dictionary_iterations``, ``dictionary_frames``).
    train_wavs : list of str
        Clean training utterances for the NMF speech dictionary.
    device : str
        Torch device.
    log : callable
        Prints notices (lips resized to a model's ROI size, lips
        distrusted, MCEM stopped).

    Example
    -------
    >>> from lobes.models.av_features import SineSTFT
    >>> separators = Separators({"methods": ["mixture", "av_vae"],
    ...     "sample_rate": 16000, "stft": SineSTFT(128, 32)}, [])
    >>> separators.methods, separators.skipped
    (['mixture'], ['av_vae'])
    """

    def __init__(self, hparams, train_wavs, device="cpu", log=print):
        self.hparams = hparams
        self.device = device
        self.log = log
        self.sample_rate = int(hparams["sample_rate"])
        self.models = {}
        self.skipped = []
        self.iterations = {
            "av_vae": hparams.get("av_vae_iterations"),
            "a_vae": hparams.get("a_vae_iterations"),
        }
        folders = {
            "av_vae": (hparams.get("av_vae_folder"), "vae"),
            "a_vae": (hparams.get("a_vae_folder"), "vae"),
            "supervised": (hparams.get("supervised_folder"), "separator"),
        }
        unknown = [m for m in hparams["methods"] if m not in METHODS]
        if unknown:
            raise HparamsError(
                f"methods: unknown {unknown}; choose from {', '.join(METHODS)}"
            )
        self.methods = []
        for method in hparams["methods"]:
            if method in folders:
                folder, key = folders[method]
                if not folder:
                    self.skipped.append(method)
                    continue
                module, run = load_trained(folder, key, device)
                self.models[method] = (module, run.get("stft"))
            self.methods.append(method)
        self.stft = hparams["stft"].to(device)
        if "nmf" in self.methods:
            nmf = hparams["nmf"]
            settings = hparams["nmf_settings"]
            generator = torch.Generator().manual_seed(int(hparams["seed"]))
            nmf.dictionary = learn_speech_dictionary(
                train_wavs, hparams["stft"], int(settings["speech_rank"]),
                int(settings["dictionary_iterations"]),
                int(settings["dictionary_frames"]), generator,
            ).to(device)  # fmt: skip
            self.nmf = nmf
        self.fallback = None
        if hparams.get("lips_fallback") and "av_vae" in self.models:
            loaded = self.models.get("a_vae")
            if loaded is None and hparams.get("a_vae_folder"):
                loaded = (load_trained(hparams["a_vae_folder"], "vae",
                                       device)[0], None)  # fmt: skip
            if loaded is None:
                raise HparamsError(
                    "lips_fallback: True needs an A-VAE to fall back to; "
                    "pass --a_vae_folder=<A-VAE training run>, or "
                    "--lips_fallback=False to run the AV-VAE alone"
                )
            self.fallback = loaded[0]
        self.min_lip_motion = float(
            hparams.get("min_lip_motion", MIN_LIP_MOTION)
        )

    def _generator(self, method):
        offset = METHODS.index(method)
        generator = torch.Generator(device=self.device)
        return generator.manual_seed(int(self.hparams["seed"]) * 10 + offset)

    def run(self, method, items):
        """Estimates ``[J, T]`` of each item with one method."""
        if method == "mixture":
            return [
                item.mixture[None].repeat(len(item.lips), 1) for item in items
            ]
        if method == "nmf":
            return separate_nmf(self.nmf, items, self.stft,
                                self._generator(method), self.device)
        module, stft = self.models[method]
        if method == "supervised":
            return separate_supervised(module, items, self.device)
        items = fit_lips_to_model(items, module, self.log)
        mcem = self.hparams["mcem"]
        iterations = self.iterations.get(method)
        if iterations is not None:  # this method's own number of iterations
            mcem = copy.copy(mcem)
            mcem.num_iterations = int(iterations)
        fallback = self.fallback if method == "av_vae" else None
        still = set()
        if fallback is not None:  # lips that do not move carry no speech
            for index, item in enumerate(items):
                motion = min(lip_motion(f) for f in item.lips)
                if motion < self.min_lip_motion:
                    still.add(index)
                    self.log(
                        f"notice: {item.id}: the lips do not move (motion "
                        f"{motion:.4f} < {self.min_lip_motion:g}); the "
                        "audio-only model enhances it"
                    )
        moving = [item for i, item in enumerate(items) if i not in still]
        estimates = {}
        if moving:
            out = separate_vae(
                module, mcem, moving, stft.to(self.device), self.sample_rate,
                self._generator(method), self.device, fallback=fallback,
                log=self.log,
            )  # fmt: skip
            order = [i for i in range(len(items)) if i not in still]
            estimates.update(zip(order, out))
        if still:
            audio_mcem = copy.copy(self.hparams["mcem"])
            if self.iterations.get("a_vae") is not None:
                audio_mcem.num_iterations = int(self.iterations["a_vae"])
            out = separate_vae(
                fallback, audio_mcem, [items[i] for i in sorted(still)],
                stft.to(self.device), self.sample_rate,
                self._generator("a_vae"), self.device, log=self.log,
            )  # fmt: skip
            estimates.update(zip(sorted(still), out))
        return [estimates[i] for i in range(len(items))]


def evaluate_methods(separators, items, output_folder, batch_size=16,
                     quality=True, n_audio=0, log=print):  # fmt: skip
    """Separate and score every item with every method.

    Writes ``results.csv`` (one row per mixture and method) and
    ``summary.json`` (means per method, seconds per second of audio) into
    ``output_folder``, and the estimates of the first ``n_audio`` mixtures
    into ``output_folder/audio``.

    Arguments
    ---------
    separators : Separators
        The methods.
    items : list of AVMixture
        Mixtures with references.
    output_folder : str
        Where the files go.
    batch_size : int
        Mixtures per MCEM/NMF batch.
    quality : bool
        Also PESQ and STOI.
    n_audio : int
        Mixtures whose estimates are written as wavs.
    log : callable
        Prints one line of means per method.

    Returns
    -------
    dict
        The summary.

    Example
    -------
    >>> import tempfile
    >>> from lobes.models.av_features import SineSTFT
    >>> from lobes.separation_mcem.methods import AVMixture
    >>> separators = Separators({"methods": ["mixture"], "sample_rate":
    ...                          16000, "stft": SineSTFT(128, 32)}, [])
    >>> refs = torch.randn(2, 8000)
    >>> item = AVMixture("m", refs.sum(0), [None, None], 30.0, refs)
    >>> summary = evaluate_methods(separators, [item], tempfile.mkdtemp(),
    ...                            quality=False, log=lambda line: None)
    >>> round(summary["methods"]["mixture"]["sdr_i"], 3)
    0.0
    """
    rows = []
    summary = {"mixtures": len(items), "methods": {}}
    audio_seconds = sum(i.mixture.numel() for i in items) / 16000.0
    audio_dir = os.path.join(output_folder, "audio")
    for item in items[:n_audio]:
        _write_wavs(audio_dir, f"{item.id}_ref", item.references, 16000)
    for method in separators.methods:
        start = time.time()
        estimates = []
        for first in range(0, len(items), batch_size):
            batch = items[first : first + batch_size]
            estimates += separators.run(method, batch)
        seconds = time.time() - start
        method_rows = []
        for index, (item, est) in enumerate(zip(items, estimates)):
            scores = evaluate(est, item.references, item.mixture,
                              quality=quality)  # fmt: skip
            if method != "av_vae":  # only the lips fix the order
                scores["order_correct"] = math.nan
            method_rows.append({"id": item.id, "method": method, **scores})
            if index < n_audio:
                _write_wavs(audio_dir, f"{item.id}_{method}", est, 16000)
        rows += method_rows
        means = {
            key: float(np.nanmean([r[key] for r in method_rows]))
            if any(math.isfinite(r[key]) for r in method_rows) else math.nan
            for key in SCORES
        }
        means["seconds_per_audio_second"] = seconds / max(audio_seconds, 1e-9)
        summary["methods"][method] = means
        log(f"{method}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in means.items() if math.isfinite(v)))
    os.makedirs(output_folder, exist_ok=True)
    write_results_csv(os.path.join(output_folder, "results.csv"), rows,
                      average_row=False)  # fmt: skip
    summary["skipped"] = list(separators.skipped)
    with open(os.path.join(output_folder, "summary.json"), "w") as fout:
        json.dump(summary, fout, indent=2, sort_keys=True)
        fout.write("\n")
    return summary
