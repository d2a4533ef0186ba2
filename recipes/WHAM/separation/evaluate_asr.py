#!/usr/bin/env python3
"""Speech recognition of separated speakers: WER and CER per separator.

Each trained separator of ``separators`` (NASS and its baseline, trained by
``train.py`` here) splits every test mixture of WHAM!; a CTC recogniser
trained by ``recipes/Voicebank/ASR`` transcribes each separated speaker;
SpeechBrain's ``ErrorRateStats`` scores the words against the speaker's
transcript. The same recogniser also hears the mixture itself (scored
against each speaker's transcript: the floor of no separation) and the true
sources (the ceiling). The mixtures are 8 kHz and the recogniser 16 kHz:
every signal is resampled to the recogniser's rate before recognition.

Which separated output is which speaker: ``assignment: pit`` takes the
permutation of best SI-SNR against the true sources (the order in which the
separation test scores them); ``best_wer`` the permutation with the fewest
word errors. NASS's noise output is never transcribed.

    python evaluate_asr.py hparams/evaluate_asr.yaml \\
        --separators="{nass_sepformer: results/nass_sepformer/1234, \\
                       sepformer: results/sepformer/1234}" \\
        --recognizer=../../Voicebank/ASR/results/ctc_clean/1986

Writes ``asr_results.json`` (WER, CER, error counts and mean SI-SNR of the
assigned outputs per condition), ``asr_results.md`` (the table),
``asr_results.csv`` (per speaker of each mixture) and SpeechBrain's
``wer_<condition>.txt`` alignments to the output folder.

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import itertools
import json
import logging
import math
import os
import sys
import time

import torch

from lobes.data.audio import read_audio
from lobes.data.mini_corpora import read_transcripts, wham_transcripts
from lobes.data.prepare import prepare_wham
from lobes.data.separation_data import read_manifest
from lobes.errors import HparamsError, exit_on_user_error
from lobes.losses.pit import best_permutation, pairwise_neg_sisnr
from lobes.pretrained import NoiseAwareSeparation
from lobes.recipe import (
    load_recipe,
    prepare_corpus,
    resolve_data_folder,
    setup_experiment,
)
from lobes.transcription import (
    ErrorRates,
    load_recognizer,
    source_utterances,
    word_errors,
)

logger = logging.getLogger(__name__)

ASSIGNMENTS = ("pit", "best_wer")
REFERENCES = ("mixture", "sources")


def check_options(evaluation):
    """One-line errors for options the evaluation does not know."""
    if evaluation["assignment"] not in ASSIGNMENTS:
        raise HparamsError(
            f"assignment must be one of {', '.join(ASSIGNMENTS)}, got "
            f"'{evaluation['assignment']}'"
        )
    unknown = [r for r in evaluation["references"] or []
               if r not in REFERENCES]
    if unknown:
        raise HparamsError(
            f"references {unknown} unknown; choose from "
            f"{', '.join(REFERENCES)}"
        )
    separators = evaluation["separators"] or {}
    if not isinstance(separators, dict):
        raise HparamsError(
            "separators must map names to trained separators, e.g. "
            "--separators=\"{nass: results/nass_sepformer/1234}\""
        )
    names = set(separators) & set(REFERENCES)
    if names:
        raise HparamsError(
            f"separator names {sorted(names)} are taken by the references; "
            "rename them"
        )


def si_snrs(estimates, references):
    """SI-SNR (dB) of each estimate ``[T]`` against its reference."""
    pairs = torch.stack(estimates, dim=1).unsqueeze(0)
    refs = torch.stack(references, dim=1).unsqueeze(0)
    matrix = -pairwise_neg_sisnr(pairs, refs)[0]
    return [float(matrix[i, i]) for i in range(len(estimates))]


def assign(estimates, hypotheses, sources, references, rule):
    """The separated outputs' order that matches the speakers.

    Returns
    -------
    list of int
        ``order[j]``: the output given speaker ``j``'s transcript.
    """
    if rule == "pit":
        estimated = torch.stack(estimates, dim=1).unsqueeze(0)
        targets = torch.stack(sources, dim=1).unsqueeze(0)
        _, perm = best_permutation(pairwise_neg_sisnr(estimated, targets))
        return perm[0].tolist()
    speakers = range(len(references))
    return list(min(
        itertools.permutations(speakers),
        key=lambda order: sum(
            word_errors(references[j], hypotheses[order[j]])
            for j in speakers
        ),
    ))


def evaluate(rows, transcripts, separators, recognizer, sample_rate,
             evaluation):
    """Transcribe every condition of every mixture; return the scores.

    Returns
    -------
    rates : dict
        Condition -> :class:`lobes.transcription.ErrorRates`.
    si_snr : dict
        Condition -> list of SI-SNR (dB) of the recognised signals.
    per_utterance : list of dict
        One row per speaker of each mixture and condition.
    """
    conditions = list(evaluation["references"] or []) + list(separators)
    rates = {name: ErrorRates() for name in conditions}
    si_snr = {name: [] for name in conditions}
    per_utterance = []
    for row in rows:
        utterances = source_utterances(row["ID"])
        missing = [u for u in utterances if u not in transcripts]
        if missing:
            raise HparamsError(
                f"no transcript of {missing[0]} (mixture {row['ID']}); pass "
                "--transcripts=<file of '<utterance id> <words>' lines>"
            )
        targets = [transcripts[u].split() for u in utterances]
        mix = read_audio(row["mix_wav"], sample_rate=sample_rate)
        sources = [read_audio(row[f"s{j + 1}_wav"], sample_rate=sample_rate)
                   for j in range(len(utterances))]
        heard = {}
        if "sources" in rates:
            heard["sources"] = (sources, recognizer.transcribe(
                sources, sample_rate))
        if "mixture" in rates:
            words = recognizer.transcribe([mix], sample_rate)[0]
            heard["mixture"] = ([mix] * len(sources),
                                [words] * len(sources))
        for name, separator in separators.items():
            speakers = separator.separate(mix)["speakers"]
            estimates = [speakers[:, k] for k in range(speakers.shape[1])]
            if len(estimates) != len(sources):
                raise HparamsError(
                    f"separator {name} outputs {len(estimates)} speakers, "
                    f"the mixtures hold {len(sources)}"
                )
            hypotheses = recognizer.transcribe(estimates, sample_rate)
            order = assign(estimates, hypotheses, sources, targets,
                           evaluation["assignment"])
            heard[name] = ([estimates[k] for k in order],
                           [hypotheses[k] for k in order])
        for name, (signals, hypotheses) in heard.items():
            ids = [f"{row['ID']}-s{j + 1}" for j in range(len(sources))]
            rates[name].append(ids, hypotheses, targets)
            scores = [math.nan] * len(sources)
            if name != "sources":  # the references themselves
                scores = si_snrs(signals, sources)
                si_snr[name].extend(scores)
            for j, utt_id in enumerate(ids):
                per_utterance.append({
                    "id": utt_id, "condition": name,
                    "utterance": utterances[j],
                    "reference_words": len(targets[j]),
                    "word_errors": word_errors(targets[j], hypotheses[j]),
                    "si_snr": None if math.isnan(scores[j])
                    else round(scores[j], 3),
                    "hypothesis": " ".join(hypotheses[j]),
                })
    return rates, si_snr, per_utterance


def _number(value):
    """A table cell: two decimals, or a dash for NaN."""
    return "—" if math.isnan(value) else f"{value:.2f}"


def write_results(evaluation, rates, si_snr, per_utterance, setup):
    """The JSON, the markdown table, the CSV and the alignments."""
    results = {}
    for name, rate in rates.items():
        values = [v for v in si_snr[name] if math.isfinite(v)]
        results[name] = {
            **rate.summary(), **rate.counts(),
            "si_snr": sum(values) / len(values) if values else math.nan,
        }
        rate.write(os.path.join(evaluation["wer_folder"],
                                f"wer_{name}.txt"))
    with open(evaluation["results_file"], "w", encoding="utf-8") as fout:
        json.dump({"setup": setup, "results": results}, fout, indent=1)
    lines = [
        "| condition | WER (%) | CER (%) | SI-SNR (dB) | utterances |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result['WER']:.2f} | {result['CER']:.2f} "
            f"| {_number(result['si_snr'])} | {result['utterances']} |"
        )
    with open(evaluation["summary_file"], "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    with open(evaluation["per_utterance_file"], "w", newline="",
              encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(per_utterance[0]))
        writer.writeheader()
        writer.writerows(per_utterance)
    return results, "\n".join(lines)


@exit_on_user_error
def main(argv=None):
    """Load the models, prepare WHAM!'s test set, transcribe, score."""
    from speechbrain.utils.distributed import run_on_main

    hparams, hparams_file, run_opts, overrides = load_recipe(argv)
    evaluation = hparams["evaluation"]
    check_options(evaluation)
    device = run_opts.get("device", "cpu")
    sample_rate = int(hparams["sample_rate"])
    # Every model first: a missing one stops before any folder is made.
    recognizer = load_recognizer(evaluation["recognizer"], device=device)
    separators = {}
    for name, source in (evaluation["separators"] or {}).items():
        separator = NoiseAwareSeparation.from_source(source, device=device)
        rate = int(separator.hparams.sample_rate)
        if rate != sample_rate:
            raise HparamsError(
                f"separator {name} ({source}) works at {rate} Hz, the "
                f"mixtures are at {sample_rate} Hz: set --sample_rate={rate}"
            )
        separators[name] = separator
    setup_experiment(hparams, hparams_file, run_opts, overrides)
    root = run_on_main(
        resolve_data_folder,
        args=[hparams["data_folder"], "wham", hparams["mini_corpus_size"]],
    )
    manifests = prepare_corpus(
        prepare_wham, hparams, "wham", sample_rate=sample_rate,
        mode=hparams["mode"], mixture=hparams["mixture"],
    )
    if hparams["transcripts"]:
        transcripts = read_transcripts(hparams["transcripts"])
    else:
        transcripts = wham_transcripts(root)
    rows = read_manifest(manifests["test"], 2)
    if evaluation["max_mixtures"]:
        rows = rows[: int(evaluation["max_mixtures"])]
    start = time.time()
    rates, si_snr, per_utterance = evaluate(
        rows, transcripts, separators, recognizer, sample_rate, evaluation
    )
    setup = {
        "recognizer": evaluation["recognizer"],
        "separators": dict(evaluation["separators"] or {}),
        "assignment": evaluation["assignment"],
        "mixtures": len(rows), "mode": hparams["mode"],
        "mixture": hparams["mixture"], "sample_rate": sample_rate,
        "recognizer_sample_rate": recognizer.sample_rate,
        "seconds": round(time.time() - start, 1),
    }
    _, table = write_results(evaluation, rates, si_snr, per_utterance, setup)
    logger.info("Speech recognition of %d test mixtures (%s):\n%s",
                len(rows), evaluation["assignment"], table)
    print(table)
    return rates


if __name__ == "__main__":
    main(sys.argv[1:])
