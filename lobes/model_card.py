"""The model card (``README.md``) of an exported folder.

:func:`model_card` writes the hub's convention: a YAML metadata header,
what the model is, how to load it (with SpeechBrain alone, and with this
package), its test results and their provenance (:func:`run_provenance`,
:func:`read_test_results`: corpus, sizes, epochs and steps, seed).
:func:`hub_id` is the hub id a recipe's card is written for
(``noise-robust-sb/<recipe>-<corpus>``, the id
``tests/recipes/<Dataset>.csv`` lists; not published yet).

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import glob
import os
import re
import textwrap
from typing import NamedTuple

import yaml

from lobes.runs import HPARAMS_FILE

#: The hub organisation the model cards are written for (to be published).
HUB_ORGANISATION = "noise-robust-sb"


#: Display names of the corpora, by recipe folder.
CORPORA = {
    "WHAM": "WHAM!",
    "LibriMix": "Libri{num_spks}Mix",
    "Voicebank": "VoiceBank-DEMAND",
}


#: How a hub id names each corpus, by recipe folder.
HUB_CORPORA = {
    "WHAM": "wham",
    "LibriMix": "libri{num_spks}mix",
    "Voicebank": "voicebank",
}


#: Display names of the backbones, by recipe name suffix.
BACKBONES = {
    "sepformer": "SepFormer",
    "dprnn": "DPRNN",
    "convtasnet": "Conv-TasNet",
    "spectral_mask": "spectral-mask transformer (CNNTransformerSE)",
    "cmcr_net": "CMCR-Net",
}


#: Column names of test_results.csv, as the model card shows them.
METRIC_NAMES = {
    "si-snr_i": "SI-SNRi (dB)",
    "sdr_i": "SDRi (dB)",
    "si-snr": "SI-SNR (dB)",
    "sdr": "SDR (dB)",
    "noise_si-snr": "noise SI-SNR (dB)",
    "si_sdr": "SI-SDR (dB)",
    "pesq": "PESQ",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
}


#: The SpeechBrain class that loads each kind of export.
SPEECHBRAIN_CLASSES = {
    "separation": ("speechbrain.inference.separation", "SepformerSeparation"),
    "enhancement": ("speechbrain.inference.enhancement",
                    "WaveformEnhancement"),
}


_RECIPE_PATH = re.compile(
    r"recipes/([^/\s]+)/([^/\s]+)/hparams/([^/\s]+)\.yaml"
)


def hub_id(recipe, dataset, num_spks=2):
    """The hub id a recipe's model card is written for.

    Arguments
    ---------
    recipe : str
        The recipe YAML's name without extension (``nass_sepformer``).
    dataset : str
        The recipe's folder under ``recipes/`` (``WHAM``).
    num_spks : int
        Speakers, for LibriMix (``libri2mix``, ``libri3mix``).

    Example
    -------
    >>> hub_id("nass_sepformer", "WHAM")
    'noise-robust-sb/nass-sepformer-wham'
    >>> hub_id("ccr_wavlm_spectral_mask", "Voicebank")
    'noise-robust-sb/ccr-wavlm-spectral-mask-voicebank'
    >>> hub_id("dprnn", "LibriMix", num_spks=3)
    'noise-robust-sb/dprnn-libri3mix'
    """
    corpus = HUB_CORPORA.get(dataset, dataset.lower())
    corpus = corpus.format(num_spks=num_spks)
    name = recipe.replace("_", "-")
    return f"{HUB_ORGANISATION}/{name}-{corpus}"


class RunProvenance(NamedTuple):
    """Where a run comes from and what it was trained on, for the card.

    Example
    -------
    >>> _EXAMPLE_PROVENANCE.recipe, _EXAMPLE_PROVENANCE.dataset
    ('convtasnet', 'Voicebank')
    """

    recipe_path: str  # recipes/<Dataset>/<task>/hparams/<name>.yaml or ""
    dataset: str
    recipe: str
    seed: object
    corpus: str
    train_examples: object
    epochs: object
    optimizer_steps: object
    valid_loss: object
    checkpoint: str


def _count_rows(path):
    """Data rows of a CSV file."""
    with open(path, newline="", encoding="utf-8") as fin:
        return max(sum(1 for _ in csv.reader(fin)) - 1, 0)


def _read_text(path):
    """A small text file, or ``None`` when it is absent."""
    if path is None or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        return fin.read()


def run_provenance(run_folder, doc, checkpoint):
    """What the model card says about the run's origin and training.

    Arguments
    ---------
    run_folder : str
        The run's output folder (its ``hyperparams.yaml`` names the recipe
        in its header, as SpeechBrain writes it).
    doc : dict
        The run's ``hyperparams.yaml``, read (seed, data folder).
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The checkpoint exported (epochs, optimizer steps, loss).

    Returns
    -------
    RunProvenance

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.utils.checkpoints import Checkpoint
    >>> run = tempfile.mkdtemp()
    >>> _ = open(os.path.join(run, "hyperparams.yaml"), "w").write(
    ...     "# Generated from:\\n"
    ...     "# /x/recipes/WHAM/separation/hparams/nass_sepformer.yaml\\n")
    >>> provenance = run_provenance(
    ...     run, {"seed": 1234, "data_folder": "/data/wham"},
    ...     Checkpoint("save/CKPT+1", {"loss": 2.5}, {}))
    >>> provenance.recipe, provenance.dataset, provenance.seed
    ('nass_sepformer', 'WHAM', 1234)
    >>> provenance.corpus, provenance.valid_loss, provenance.checkpoint
    ('WHAM! (the real corpus)', 2.5, 'CKPT+1')
    """
    with open(os.path.join(run_folder, HPARAMS_FILE), encoding="utf-8") as f:
        header = "".join(f.readline() for _ in range(4))
    match = _RECIPE_PATH.search(header)
    recipe_path = match.group(0) if match else ""
    dataset = match.group(1) if match else "unknown"
    recipe = match.group(3) if match else os.path.basename(
        os.path.abspath(run_folder)
    )
    experiment = doc.get("experiment", doc)
    num_spks = experiment.get("num_spks", doc.get("num_spks", 2))
    name = CORPORA.get(dataset, dataset).format(num_spks=num_spks)
    data_folder = str(doc.get("data_folder", ""))
    if data_folder == "mini":
        size = doc.get("mini_corpus_size", "small")
        corpus = (
            f"mini {name} corpus ({size}): synthetic eSpeak NG speech and "
            "synthetic noises in the corpus's folder layout "
            "(lobes.data.mini_corpora), not the real corpus"
        )
    else:
        corpus = f"{name} (the real corpus)"
    train_csvs = sorted(glob.glob(os.path.join(run_folder, "save",
                                               "*_train.csv")))
    train_examples = _count_rows(train_csvs[0]) if train_csvs else None
    epochs = _read_text(checkpoint.paramfiles.get("counter"))
    brain = _read_text(checkpoint.paramfiles.get("brain"))
    steps = (yaml.safe_load(brain) or {}).get("optimizer_step") if brain \
        else None
    return RunProvenance(
        recipe_path=recipe_path,
        dataset=dataset,
        recipe=recipe,
        seed=doc.get("seed"),
        corpus=corpus,
        train_examples=train_examples,
        epochs=int(epochs) if epochs and epochs.strip().isdigit() else None,
        optimizer_steps=steps,
        valid_loss=checkpoint.meta.get("loss"),
        checkpoint=os.path.basename(str(checkpoint.path)),
    )


def read_test_results(run_folder):
    """Mean of each metric of the run's ``test_results.csv``, and its rows.

    The file has one row per test utterance and, last, an ``avg`` row
    (left out here: the means are computed again from the utterances).

    Returns
    -------
    averages : dict
        Column -> mean over the utterances (``{}`` without the file).
    count : int
        Utterances tested.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> _ = open(os.path.join(run, "test_results.csv"), "w").write(
    ...     "snt_id,pesq,stoi\\na,2.0,0.8\\nb,3.0,0.9\\navg,9,9\\n")
    >>> read_test_results(run)
    ({'pesq': 2.5, 'stoi': 0.8500000000000001}, 2)
    >>> read_test_results(tempfile.mkdtemp())
    ({}, 0)
    """
    path = os.path.join(run_folder, "test_results.csv")
    if not os.path.isfile(path):
        return {}, 0
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.reader(fin)
        header = next(reader, [])
        rows = [row for row in reader if row and row[0] != "avg"]
    averages = {}
    for column, name in enumerate(header[1:], start=1):
        try:
            values = [float(row[column]) for row in rows]
        except (IndexError, ValueError):
            continue
        if values:
            averages[name] = sum(values) / len(values)
    return averages, len(rows)


def _describe(kind, recipe, dataset_name, outputs):
    """Title and one paragraph on what the model is."""
    backbone_key = next(
        (key for key in sorted(BACKBONES, key=len, reverse=True)
         if recipe.endswith(key)), None
    )
    backbone = BACKBONES.get(backbone_key, "the recipe's backbone")
    if kind == "separation":
        speakers = outputs["num_spks"]
        if outputs["noise_index"] is not None:
            title = f"NASS-{backbone.split(' ')[0]} on {dataset_name}"
            text = (
                f"Noise-aware speech separation (NASS, Zhang et al., ICASSP "
                f"2024) with a {backbone} backbone: it separates "
                f"{speakers} speakers from a noisy mixture and returns the "
                f"background noise as one more output (output "
                f"{outputs['noise_index']}, counting from 0). Training added "
                "a patch-wise contrastive loss (PatchNCE) between the "
                "separated speakers, the true speakers and the predicted "
                "noise; it costs nothing at inference."
            )
        else:
            title = f"{backbone} on {dataset_name}"
            text = (
                f"Speech separation with {backbone}: it separates "
                f"{speakers} speakers from a noisy mixture (the baseline of "
                "the NASS recipes, without a noise output)."
            )
        return title, text
    method, note = "speech enhancement", ""
    if recipe.startswith(("cr_", "ccr_")):
        curricular = "curricular " if recipe.startswith("ccr_") else ""
        short = "CCR" if curricular else "CR"
        method = (f"speech enhancement trained with {curricular}contrastive "
                  f"regularization ({short}) in a frozen self-supervised "
                  "space")
        note = (" The regularization is training-only: at inference the "
                "model is the plain backbone.")
    title = f"{backbone} enhancement on {dataset_name}"
    text = (
        f"Single-channel {method}, {backbone} backbone: noisy waveform in, "
        f"enhanced waveform out.{note}"
    )
    return title, text


def _references(kind, recipe, outputs):
    """What the model card cites: the method, the backbone, SpeechBrain."""
    papers = {
        "nass": "Zhang et al., noise-aware speech separation with "
        "contrastive learning (NASS), ICASSP 2024, arXiv 2305.10761",
        "sepformer": "Subakan et al., \"Attention is all you need in speech "
        "separation\", ICASSP 2021",
        "dprnn": "Luo et al., \"Dual-path RNN\", ICASSP 2020",
        "convtasnet": "Luo and Mesgarani, \"Conv-TasNet\", IEEE/ACM TASLP "
        "2019",
        "cr": "Xu et al., \"All Information Is Necessary\" (CR, CMCR-Net), "
        "arXiv 2304.13439",
        "ccr": "Xu et al., curricular contrastive regularization (CCR), "
        "ICASSP 2024",
        "speechbrain": "Ravanelli et al., \"SpeechBrain: a general-purpose "
        "speech toolkit\", arXiv 2106.04624",
    }
    cited = []
    if kind == "separation" and outputs.get("noise_index") is not None:
        cited.append("nass")
    if recipe.startswith("ccr_"):
        cited += ["cr", "ccr"]
    elif recipe.startswith("cr_"):
        cited.append("cr")
    cited += [key for key in ("sepformer", "dprnn", "convtasnet")
              if recipe.endswith(key)]
    cited.append("speechbrain")
    return [papers[key] for key in cited]


def _format(value, digits=2):
    """A number for the card, ``n/a`` when unknown."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def model_card(kind, repo, provenance, outputs, parameters, sample_rate,
               averages, tested):
    """The ``README.md`` of an exported folder (hub model card).

    Arguments
    ---------
    kind : str
        ``"separation"`` or ``"enhancement"``.
    repo : str
        The hub id the card is written for.
    provenance : RunProvenance
        Where the run comes from (:func:`run_provenance`).
    outputs : dict
        Separation: ``num_spks`` (speakers) and ``noise_index``; both:
        ``custom_module``, the shipped module's file name, if any.
    parameters : int
        Parameters of the model at inference.
    sample_rate : int
        The model's rate.
    averages, tested :
        What :func:`read_test_results` returns.

    Returns
    -------
    str
        Markdown with the hub's YAML metadata header.

    Example
    -------
    >>> card = model_card("enhancement", "me/convtasnet", _EXAMPLE_PROVENANCE,
    ...                   {"custom_module": "custom.py"}, 1000, 16000,
    ...                   {"pesq": 2.5}, 10)
    >>> card.splitlines()[0], "# Conv-TasNet enhancement on" in card
    ('---', True)
    >>> "foreign_class(" in card and "| 10 | 2.50 |" in card
    True
    """
    dataset_name = CORPORA.get(provenance.dataset, provenance.dataset)
    dataset_name = dataset_name.format(num_spks=outputs.get("num_spks", 2))
    title, what = _describe(kind, provenance.recipe, dataset_name, outputs)
    module, cls = SPEECHBRAIN_CLASSES[kind]
    name = repo.split("/")[-1]
    columns = [c for c in METRIC_NAMES if c in averages]
    tags = (["audio-source-separation", "speech-separation"]
            if kind == "separation" else ["speech-enhancement"])
    metadata = "\n".join([
        "---",
        "language: en",
        "license: apache-2.0",
        "library_name: speechbrain",
        "pipeline_tag: audio-to-audio",
        "tags:",
        *[f"- {tag}" for tag in ["audio-to-audio", *tags, "speechbrain",
                                 provenance.recipe.replace("_", "-")]],
        "datasets:",
        f"- {dataset_name}",
        *(["metrics:"] + [f"- {METRIC_NAMES[c].split(' (')[0]}"
                          for c in columns] if columns else []),
        "---",
    ])
    custom = outputs.get("custom_module")
    if custom:
        use = (
            "from speechbrain.inference.interfaces import foreign_class\n"
            f'model = foreign_class(source="{repo}", '
            f'pymodule_file="{custom}", classname="{cls}", '
            f'savedir="pretrained_models/{name}")\n'
        )
        loading = (
            f"`foreign_class` imports `{custom}` of this folder (the classes "
            "of noise-robust-sb the model needs, copied verbatim from its "
            "source), then loads the folder as "
            f"`{cls}.from_hparams` does and returns SpeechBrain's `{cls}`: "
            "SpeechBrain alone loads it. With noise-robust-sb installed, "
            f"`{module}.{cls}.from_hparams(source=...)` loads it too. "
        )
    else:
        use = (
            f"from {module} import {cls}\n"
            f'model = {cls}.from_hparams(source="{repo}", '
            f'savedir="pretrained_models/{name}")\n'
        )
        loading = "SpeechBrain alone loads it (only SpeechBrain classes). "
    if kind == "separation":
        num_outputs = outputs["num_spks"] + int(
            outputs["noise_index"] is not None
        )
        use += ('est_sources = model.separate_file("mixture.wav")'
                f"  # [1, time, {num_outputs}]")
        cli = (f"python -m lobes.separate --model {repo} mixture.wav "
               "--out separated/")
        outputs_text = loading + (
            f"`separate_file` returns `[1, time, {num_outputs}]`: the "
            f"{num_outputs} outputs of the masking network in its own "
            "order, each scaled to a peak of 1"
            + (
                f"; output {outputs['noise_index']} (counting from 0: "
                "`noise_index` in `hyperparams.yaml`, "
                "`model.hparams.noise_index`) is the background noise, the "
                f"other {outputs['num_spks']} are the speakers in no "
                "particular order. `lobes.pretrained.NoiseAwareSeparation` "
                "(same `from_hparams`) returns the same outputs from "
                "`separate_file`, in the same order (a recording longer "
                "than `chunk_seconds` is cut into overlapping chunks, "
                "stitched in the first chunk's order); its `separate` "
                "returns speakers and noise apart."
                if outputs["noise_index"] is not None else
                f", {outputs['num_spks']} speakers in no particular order."
            )
        )
    else:
        use += ('enhanced = model.enhance_file("noisy.wav", '
                'output_filename="enhanced.wav")')
        cli = (f"python -m lobes.enhance --model {repo} noisy.wav "
               "--out enhanced/")
        outputs_text = loading + (
            "`enhance_file` returns the enhanced waveform. "
            "`lobes.pretrained.ChunkedWaveformEnhancement` (same "
            "`from_hparams`) cuts long recordings into overlapping chunks."
        )
    if columns:
        table = "\n".join([
            "| test set | utterances | "
            + " | ".join(METRIC_NAMES[c] for c in columns) + " |",
            "|---|---:|" + "---:|" * len(columns),
            f"| {dataset_name} test | {tested} | "
            + " | ".join(_format(averages[c]) for c in columns) + " |",
        ])
    else:
        table = ("This run has no `test_results.csv`: it was not evaluated; "
                 "evaluate it before publishing.")
    mini = provenance.corpus.startswith("mini ")
    what = textwrap.fill(what, 79)
    outputs_text = textwrap.fill(
        outputs_text + " From a clone of noise-robust-sb, the same from the "
        "command line, for files or folders of files:", 79,
        break_on_hyphens=False, break_long_words=False,
    )
    provenance_lines = "\n".join([
        f"- recipe: `{provenance.recipe_path or provenance.recipe}` of "
        "noise-robust-sb",
        f"- corpus: {provenance.corpus}; "
        f"{_format(provenance.train_examples)} training examples",
        f"- model: {parameters:,} parameters at inference, "
        f"{sample_rate} Hz",
        f"- training: epochs {_format(provenance.epochs)}, optimizer steps "
        f"{_format(provenance.optimizer_steps)}; checkpoint "
        f"`{provenance.checkpoint}` (validation loss "
        f"{_format(provenance.valid_loss, 4)})",
        f"- seeds: 1 run, seed {_format(provenance.seed)}",
    ])
    references = "\n".join(f"- {line}" for line in _references(
        kind, provenance.recipe, outputs
    ))
    caveat = (
        "\n\n**Trained on a synthetic mini corpus**: a check that the "
        "pipeline works, not a model for real recordings."
        if mini else ""
    )
    return f"""{metadata}

# {title}

> Written for the Hugging Face hub repository `{repo}`,
> **to be published**: until it is, load this folder from disk
> (`source="<this folder>"`).

{what}

## Use it

```bash
pip install speechbrain
```

```python
{use}
```

{outputs_text}

```bash
{cli}
```

Files at another sample rate are resampled to {sample_rate} Hz.

## Results

{table}

Provenance:

{provenance_lines}{caveat}

## Files

`hyperparams.yaml` (the inference modules, `pretrainer`, `sample_rate`),
one checkpoint per module (plain weights: they load with
`torch.load(..., weights_only=True)`), this card.

**Trust**: `hyperparams.yaml` is HyperPyYAML, and loading it builds the
objects it names and can run code. Load only folders and repositories you
trust.

## References

{references}
"""


#: A provenance for the examples.
_EXAMPLE_PROVENANCE = RunProvenance(
    recipe_path="recipes/Voicebank/enhance/hparams/convtasnet.yaml",
    dataset="Voicebank", recipe="convtasnet", seed=1986,
    corpus="VoiceBank-DEMAND (the real corpus)", train_examples=11572,
    epochs=100, optimizer_steps=None, valid_loss=None,
    checkpoint="CKPT+1",
)
