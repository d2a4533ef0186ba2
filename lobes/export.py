"""Export a trained recipe run to a folder any SpeechBrain user can load.

``python -m lobes.export <run folder> <out folder>`` turns the
``output_folder`` of a finished separation or enhancement run into
SpeechBrain's pretrained layout (the layout of the hub's
``speechbrain/sepformer-wham``):

- ``hyperparams.yaml``: the inference modules only, copied from the run's
  own ``hyperparams.yaml`` (so they are built exactly as in training), a
  ``pretrainer``, ``modules``, ``sample_rate`` and the chunking settings of
  :mod:`lobes.pretrained`. Separation: ``encoder``, ``masknet``, ``decoder``
  and ``num_spks`` (the masking network's outputs: ``N + 1`` for NASS) with
  ``noise_index``, the noise output (``null`` for a baseline); only
  SpeechBrain classes, so ``SepformerSeparation.from_hparams`` needs
  nothing else. Enhancement: the recipe's ``enhancer`` and, as
  ``enhance_model``, a :class:`lobes.pretrained.WaveformEnhancementAdapter`
  around it for ``WaveformEnhancement.from_hparams`` (this package must be
  installed). Training-only objects (PatchNCE, the SSL model of CR, data,
  optimiser) are left out, and nothing of the training YAML is built.
- one checkpoint per module: ``encoder.ckpt``, ``masknet.ckpt``,
  ``decoder.ckpt``, or ``enhance_model.ckpt``, plain state dicts from the
  run's best checkpoint (lowest validation loss);
- ``README.md``: a model card in the hub's convention (metadata header,
  what the model is, how to load it, its test results with their
  provenance: corpus, sizes, epochs and steps, seed).

The export is then loaded back through :func:`lobes.runs.load_trained_run`
(weights only, strict) before it is reported done.

Hub ids: the model card of ``recipes/<Dataset>/<task>/hparams/<name>.yaml``
is written for ``noise-robust-sb/<name>-<corpus>`` (:func:`hub_id`), the id
``tests/recipes/<Dataset>.csv`` lists; those repositories are not published
yet.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import glob
import io
import os
import re
import sys
import textwrap
from typing import NamedTuple

import torch

from lobes.errors import ModelSourceError, UserError, exit_on_user_error
from lobes.runs import HPARAMS_FILE, best_checkpoint, read_state_file

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

#: The training module each kind of run is exported from.
TRAINED_MODULES = {"separation": "separator", "enhancement": "enhance_model"}

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


class ExportedModel(NamedTuple):
    """What :func:`export_run` wrote.

    Attributes
    ----------
    folder : str
        The exported folder.
    kind : str
        ``"separation"`` or ``"enhancement"``.
    hub_id : str
        The hub id its model card is written for.
    files : list of str
        The files written, relative to ``folder``.
    """

    folder: str
    kind: str
    hub_id: str
    files: list


def _plain_copy(node, memo=None):
    """A copy of a round-trip YAML node without comments or anchors.

    Tags (``!new:``, ``!name:``, ...) are kept; a node reached twice stays
    one node (an anchor where the copy is written).
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    memo = {} if memo is None else memo
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, CommentedMap):
        copy = memo[id(node)] = CommentedMap()
        for key, value in node.items():
            copy[key] = _plain_copy(value, memo)
    elif isinstance(node, CommentedSeq):
        copy = memo[id(node)] = CommentedSeq()
        copy.extend(_plain_copy(value, memo) for value in node)
        if node.fa.flow_style():
            copy.fa.set_flow_style()
    elif isinstance(node, TaggedScalar):
        copy = memo[id(node)] = TaggedScalar(value=node.value,
                                             style=node.style)
    else:
        return node
    tag = getattr(node, "tag", None)
    if tag is not None and tag.value is not None:
        copy.yaml_set_ctag(tag)
    return copy


def _ref(name):
    """A ``!ref <name>`` node."""
    from ruamel.yaml.comments import TaggedScalar

    return TaggedScalar(value=f"<{name}>", tag="!ref")


def _tagged_map(tag, **items):
    """A mapping node with a ``!new:``-style tag."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.tag import Tag

    node = CommentedMap(items)
    node.yaml_set_ctag(Tag(suffix=tag))
    return node


def _tag_of(node):
    """A node's tag (``!new:pkg.Class``), or ``""``."""
    tag = getattr(node, "tag", None)
    return (tag.value or "") if tag is not None else ""


def read_run_yaml(run_folder):
    """The run's ``hyperparams.yaml`` as round-trip YAML (nothing built).

    Raises
    ------
    ModelSourceError
        One line, when the file is missing or not YAML.
    """
    from ruamel.yaml import YAML, YAMLError

    path = os.path.join(run_folder, HPARAMS_FILE)
    if not os.path.isfile(path):
        raise ModelSourceError(
            f"{run_folder}: no hyperparams.yaml; pass the output folder of a "
            "finished separation or enhancement run"
        )
    try:
        with open(path, encoding="utf-8") as fin:
            return YAML(typ="rt").load(fin)
    except YAMLError as err:
        first = " ".join(str(err).split())[:160]
        raise ModelSourceError(f"{path}: cannot be read ({first})") from None


class RunProvenance(NamedTuple):
    """Where a run comes from and what it was trained on, for the card."""

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
    """What the model card says about the run's origin and training."""
    import yaml

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


def _separation_yaml(experiment, checkpoint, sample_rate, chunking):
    """The inference YAML and state dicts of a separation run."""
    from ruamel.yaml.comments import CommentedMap

    from lobes.pretrained import noise_output_index

    separator = experiment.get("separator")
    if not _tag_of(separator).endswith("NoiseAwareSeparator"):
        raise ModelSourceError(
            "the run's `separator` is not a lobes.models.noise_aware."
            "NoiseAwareSeparator; is this a separation recipe's run?"
        )
    num_spks = int(separator["num_spks"])
    noise_output = bool(separator.get("noise_output", True))
    num_outputs = num_spks + int(noise_output)
    noise_index = (
        noise_output_index(experiment, checkpoint, num_outputs)
        if noise_output else None
    )
    state = read_state_file(_paramfile(checkpoint, "separator"))
    parts = ("encoder", "masknet", "decoder")
    states = {part: {} for part in parts}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        if part not in states:
            raise ModelSourceError(
                f"{checkpoint.path}: separator.ckpt holds '{key}', outside "
                "the encoder, masknet and decoder; cannot export it"
            )
        states[part][rest] = value
    doc = CommentedMap()
    doc["sample_rate"] = sample_rate
    doc["num_spks"] = num_outputs
    doc.yaml_add_eol_comment(
        f"outputs: {num_spks} speakers"
        + (" and the noise" if noise_output else ""), "num_spks"
    )
    doc["noise_index"] = noise_index
    doc.yaml_add_eol_comment(
        "which output is the noise (null: none)", "noise_index"
    )
    doc.update(chunking)
    for part in parts:
        doc[part] = _plain_copy(separator[part])
    doc["modules"] = CommentedMap((part, _ref(part)) for part in parts)
    loadables = CommentedMap((part, _ref(part)) for part in parts)
    return doc, states, loadables, {"noise_index": noise_index,
                                    "num_spks": num_spks}


def _enhancement_yaml(experiment, checkpoint, sample_rate, chunking):
    """The inference YAML and state dict of an enhancement run."""
    from ruamel.yaml.comments import CommentedMap

    enhancer = experiment.get("enhance_model")
    if not _tag_of(enhancer).startswith("!new:"):
        raise ModelSourceError(
            "the run's `enhance_model` is not a `!new:` object; is this an "
            "enhancement recipe's run?"
        )
    doc = CommentedMap()
    doc["sample_rate"] = sample_rate
    doc.update(chunking)
    doc["enhancer"] = _plain_copy(enhancer)
    doc["enhance_model"] = _tagged_map(
        "!new:lobes.pretrained.WaveformEnhancementAdapter",
        enhancer=_ref("enhancer"),
    )
    doc.yaml_set_comment_before_after_key(
        "enhance_model",
        before="SpeechBrain's WaveformEnhancement unpacks two outputs",
    )
    doc["modules"] = CommentedMap(enhance_model=_ref("enhance_model"))
    states = {"enhance_model": read_state_file(
        _paramfile(checkpoint, "enhance_model")
    )}
    loadables = CommentedMap(enhance_model=_ref("enhancer"))
    return doc, states, loadables, {}


def _paramfile(checkpoint, name):
    """The path of ``<name>.ckpt`` in a checkpoint, or a one-line error."""
    path = checkpoint.paramfiles.get(name)
    if path is None or not os.path.isfile(path):
        raise ModelSourceError(
            f"{checkpoint.path}: no {name}.ckpt in this checkpoint; is this "
            "the right kind of run folder?"
        )
    return path


def _dump_yaml(doc, header):
    """YAML text: a comment header, then the document."""
    from ruamel.yaml import YAML

    writer = YAML()
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 4096
    text = io.StringIO()
    writer.dump(doc, text)
    comments = "".join(f"# {line}".rstrip() + "\n"
                       for line in header.splitlines())
    return comments + "\n" + text.getvalue()


def export_run(run_folder, out_folder, hub_id_override=None,
               overwrite=False, chunk_seconds=None, overlap_seconds=None):
    """Write a training run's model in SpeechBrain's pretrained layout.

    Arguments
    ---------
    run_folder : str
        The ``output_folder`` of a finished separation or enhancement run.
    out_folder : str
        The folder to write (created; must be empty unless ``overwrite``).
    hub_id_override : str, optional
        The hub id the model card is written for (default: :func:`hub_id`
        of the run's recipe).
    overwrite : bool
        Replace the files of an earlier export in ``out_folder``.
    chunk_seconds, overlap_seconds : float, optional
        The chunking settings written into ``hyperparams.yaml`` (defaults
        of :mod:`lobes.pretrained`).

    Returns
    -------
    ExportedModel

    Raises
    ------
    ModelSourceError, UserError
        One line, for a folder that is not a finished run or a non-empty
        output folder.

    Example
    -------
    >>> export_run("/no/such/run", "/tmp/out")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: no hyperparams.yaml; ...
    """
    from lobes.pretrained import (
        DEFAULT_CHUNK_SECONDS,
        DEFAULT_OVERLAP_SECONDS,
        check_chunking,
    )
    from lobes.runs import load_trained_run

    run_folder = os.path.expanduser(str(run_folder))
    out_folder = os.path.expanduser(str(out_folder))
    doc = read_run_yaml(run_folder)
    checkpoint = best_checkpoint(run_folder)
    _check_out_folder(out_folder, overwrite)
    experiment = doc.get("experiment", doc)
    kind = _kind_of(experiment, run_folder)
    chunking = {
        "chunk_seconds": float(chunk_seconds if chunk_seconds is not None
                               else DEFAULT_CHUNK_SECONDS),
        "overlap_seconds": float(overlap_seconds
                                 if overlap_seconds is not None
                                 else DEFAULT_OVERLAP_SECONDS),
    }
    check_chunking(chunking["chunk_seconds"], chunking["overlap_seconds"])
    if "sample_rate" not in experiment:
        raise ModelSourceError(
            f"{run_folder}/hyperparams.yaml: no sample_rate in the experiment"
        )
    sample_rate = int(experiment["sample_rate"])
    build = _separation_yaml if kind == "separation" else _enhancement_yaml
    inference, states, loadables, outputs = build(
        experiment, checkpoint, sample_rate, chunking
    )
    inference["audio_normalizer"] = _tagged_map(
        "!new:speechbrain.dataio.preprocess.AudioNormalizer",
        sample_rate=_ref("sample_rate"),
    )
    inference.move_to_end("modules")
    inference["pretrainer"] = _tagged_map(
        "!new:speechbrain.utils.parameter_transfer.Pretrainer",
        loadables=loadables,
    )
    provenance = run_provenance(run_folder, doc, checkpoint)
    repo = hub_id_override or hub_id(
        provenance.recipe, provenance.dataset,
        outputs.get("num_spks", experiment.get("num_spks", 2)),
    )

    _prepare_out_folder(out_folder)
    files = []
    for name, state in states.items():
        torch.save(state, os.path.join(out_folder, f"{name}.ckpt"))
        files.append(f"{name}.ckpt")
    module, cls = SPEECHBRAIN_CLASSES[kind]
    header = (
        "yamllint disable\n"
        f"Inference hyperparameters of {provenance.recipe_path or 'a run'} "
        f"({kind}),\nwritten by `python -m lobes.export` from its "
        f"checkpoint {provenance.checkpoint}.\n"
        f"Load with {module}.{cls}.from_hparams(source=<this folder>).\n"
        "Loading this file builds its objects and can run code: load only "
        "folders you trust."
    )
    with open(os.path.join(out_folder, HPARAMS_FILE), "w",
              encoding="utf-8") as fout:
        fout.write(_dump_yaml(inference, header))
    files.append(HPARAMS_FILE)

    # Load it back, the way every user of the package will (strict, safe).
    run = load_trained_run(out_folder, [TRAINED_MODULES[kind]], kind=kind)
    model = run.modules[TRAINED_MODULES[kind]]
    parameters = sum(p.numel() for p in model.parameters())
    card = model_card(kind, repo, provenance, outputs, parameters,
                      sample_rate, *read_test_results(run_folder))
    with open(os.path.join(out_folder, "README.md"), "w",
              encoding="utf-8") as fout:
        fout.write(card)
    files.append("README.md")
    return ExportedModel(out_folder, kind, repo, files)


def _kind_of(experiment, run_folder):
    """``separation`` or ``enhancement``, from the run's modules."""
    modules = experiment.get("modules") or {}
    for kind, name in TRAINED_MODULES.items():
        if name in modules:
            return kind
    raise ModelSourceError(
        f"{run_folder}/hyperparams.yaml: no `separator` or `enhance_model` "
        "in `modules`; pass the output folder of a separation or "
        "enhancement run"
    )


def _check_out_folder(out_folder, overwrite):
    """Refuse a training run's folder, a file, or other files (one line)."""
    if os.path.isdir(os.path.join(out_folder, "save")):
        raise UserError(
            f"{out_folder}: holds a training run (save/); export to another "
            "folder"
        )
    if os.path.isfile(out_folder):
        raise UserError(f"{out_folder}: is a file; pass a folder")
    if os.path.isdir(out_folder) and os.listdir(out_folder) and not overwrite:
        raise UserError(
            f"{out_folder}: not empty; pass an empty or new folder, or "
            "--overwrite to replace an earlier export"
        )


def _prepare_out_folder(out_folder):
    """Create the output folder, without an earlier export's checkpoints."""
    os.makedirs(out_folder, exist_ok=True)
    for name in os.listdir(out_folder):
        if name.endswith(".ckpt"):
            os.remove(os.path.join(out_folder, name))


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

    Returns
    -------
    str
        Markdown with the hub's YAML metadata header.
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
    if kind == "separation":
        num_outputs = outputs["num_spks"] + int(
            outputs["noise_index"] is not None
        )
        use = (
            f"from {module} import {cls}\n"
            f'model = {cls}.from_hparams(source="{repo}", '
            f'savedir="pretrained_models/{name}")\n'
            'est_sources = model.separate_file("mixture.wav")'
            f"  # [1, time, {num_outputs}]"
        )
        cli = (f"python -m lobes.separate --model {repo} mixture.wav "
               "--out separated/")
        outputs_text = (
            f"`separate_file` returns `[1, time, num_spks]` with "
            f"`num_spks` = {outputs['num_spks']}"
            + (
                f" speakers + 1 noise: output {outputs['noise_index']} "
                "(`noise_index` in `hyperparams.yaml`) is the background "
                "noise, the others are the speakers in no particular order. "
                "`lobes.pretrained.NoiseAwareSeparation` (same `from_hparams`)"
                " returns speakers and noise apart and cuts long recordings "
                "into overlapping chunks."
                if outputs["noise_index"] is not None else
                " speakers, in no particular order."
            )
        )
    else:
        use = (
            f"from {module} import {cls}\n"
            f'model = {cls}.from_hparams(source="{repo}", '
            f'savedir="pretrained_models/{name}")\n'
            'enhanced = model.enhance_file("noisy.wav", '
            'output_filename="enhanced.wav")'
        )
        cli = (f"python -m lobes.enhance --model {repo} noisy.wav "
               "--out enhanced/")
        outputs_text = (
            "`enhance_file` returns the enhanced waveform. The model's class "
            "lives in this package (`lobes`), which must be installed; "
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
        "command line, for files or folders of files:", 79
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


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.export``."""
    parser = argparse.ArgumentParser(
        prog="python -m lobes.export",
        description="Export a trained recipe run to SpeechBrain's "
        "pretrained layout (hyperparams.yaml, one checkpoint per module, "
        "model card).",
    )
    parser.add_argument("run_folder", help="output folder of a training run")
    parser.add_argument("out_folder", help="folder to write")
    parser.add_argument(
        "--hub_id", default=None,
        help="hub id the model card is written for (default: "
        f"{HUB_ORGANISATION}/<recipe>-<corpus>)",
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in out_folder")
    parser.add_argument("--chunk_seconds", type=float, default=None)
    parser.add_argument("--overlap_seconds", type=float, default=None)
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    """Export a run; print the folder, its files and how to load it."""
    args = parse_args(argv)
    os.environ.setdefault("SB_LOG_LEVEL", "ERROR")
    exported = export_run(
        args.run_folder, args.out_folder, hub_id_override=args.hub_id,
        overwrite=args.overwrite, chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
    )
    module, cls = SPEECHBRAIN_CLASSES[exported.kind]
    print(f"exported {exported.kind} model to {exported.folder}: "
          f"{', '.join(exported.files)}")
    print(f"model card written for {exported.hub_id} (to be published)")
    print(f"load it: {module}.{cls}.from_hparams(source="
          f"{exported.folder!r})", file=sys.stdout)
    return exported


if __name__ == "__main__":
    main()
