"""Export a trained recipe run to a folder any SpeechBrain user can load.

``python -m lobes.export <run folder> <out folder>`` turns the
``output_folder`` of a finished separation or enhancement run into
SpeechBrain's pretrained layout (the layout of the hub's
``speechbrain/sepformer-wham``):

- ``hyperparams.yaml``: the inference modules only, copied from the run's
  own ``hyperparams.yaml`` (so they are built exactly as in training), a
  ``pretrainer``, ``modules``, ``sample_rate`` and the chunking settings of
  :mod:`lobes.chunking`. Separation: ``encoder``, ``masknet``, ``decoder``
  and ``num_spks`` (the masking network's outputs: ``N + 1`` for NASS) with
  ``noise_index``, the noise output (``null`` for a baseline); only
  SpeechBrain classes, so ``SepformerSeparation.from_hparams`` needs
  nothing else. Enhancement: the recipe's ``enhancer`` and, as
  ``enhance_model``, a :class:`lobes.waveform_adapter.
  WaveformEnhancementAdapter` around it for SpeechBrain's
  ``WaveformEnhancement``. Training-only objects (PatchNCE, the SSL model
  of CR, data, optimiser) are left out, and nothing of the training YAML
  is built.
- one checkpoint per module: ``encoder.ckpt``, ``masknet.ckpt``,
  ``decoder.ckpt``, or ``enhance_model.ckpt``, plain state dicts from the
  run's best checkpoint (lowest validation loss);
- ``custom.py``, when the YAML names classes of this package (every
  enhancer): their module files, verbatim (:mod:`lobes.custom_module`),
  so that SpeechBrain's ``foreign_class(source, pymodule_file="custom.py",
  classname="WaveformEnhancement")`` loads the folder where this package
  is not installed;
- ``README.md``: a model card in the hub's convention (metadata header,
  what the model is, how to load it, its test results with their
  provenance: corpus, sizes, epochs and steps, seed), written by
  :mod:`lobes.model_card`.

The run's checkpoint files are checked first (a truncated one is named
with the fix) and the output folder must be writable, so that nothing is
written half-way.

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
import io
import os
import sys
from typing import NamedTuple

import torch
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.tag import Tag

from lobes.chunking import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    check_chunking,
)
from lobes.custom_module import (
    CUSTOM_MODULE_FILE,
    custom_module_source,
    package_modules,
)
from lobes.errors import ModelSourceError, UserError, exit_on_user_error
from lobes.inference_cli import check_output_folder
from lobes.model_card import (
    HUB_ORGANISATION,
    SPEECHBRAIN_CLASSES,
    hub_id,
    model_card,
    read_test_results,
    run_provenance,
)
from lobes.pretrained import noise_output_index
from lobes.runs import (
    HPARAMS_FILE,
    best_checkpoint,
    check_model_checkpoints,
    load_trained_run,
    read_state_file,
)

#: The training module each kind of run is exported from.
TRAINED_MODULES = {"separation": "separator", "enhancement": "enhance_model"}


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

    Example
    -------
    >>> ExportedModel("out", "enhancement", "me/model", ["README.md"]).kind
    'enhancement'
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
    return TaggedScalar(value=f"<{name}>", tag="!ref")


def _tagged_map(tag, **items):
    """A mapping node with a ``!new:``-style tag."""
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

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> _ = open(os.path.join(run, "hyperparams.yaml"), "w").write(
    ...     "sample_rate: 8000\\nmodel: !new:torch.nn.Identity\\n")
    >>> doc = read_run_yaml(run)
    >>> doc["sample_rate"], _tag_of(doc["model"])
    (8000, '!new:torch.nn.Identity')
    >>> read_run_yaml("/no/such/run")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: no hyperparams.yaml; ...
    """
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


def _separation_yaml(experiment, checkpoint, sample_rate, chunking):
    """The inference YAML and state dicts of a separation run."""
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
        "!new:lobes.waveform_adapter.WaveformEnhancementAdapter",
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
    run_folder = os.path.expanduser(str(run_folder))
    out_folder = os.path.expanduser(str(out_folder))
    doc = read_run_yaml(run_folder)
    checkpoint = best_checkpoint(run_folder)
    _check_out_folder(out_folder, overwrite)
    experiment = doc.get("experiment", doc)
    kind = _kind_of(experiment, run_folder)
    check_model_checkpoints(run_folder, [TRAINED_MODULES[kind],
                                         "noise_output_tracker"])
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

    module, cls = SPEECHBRAIN_CLASSES[kind]
    modules = package_modules(_dump_yaml(inference, ""))
    load = (
        f"Load with {module}.{cls}.from_hparams(source=<this folder>)"
        if not modules else
        "Load with SpeechBrain alone: speechbrain.inference.interfaces."
        "foreign_class(source=<this folder>,\n"
        f'pymodule_file="{CUSTOM_MODULE_FILE}", classname="{cls}"); with '
        f"noise-robust-sb installed, also\n{module}.{cls}.from_hparams("
        "source=<this folder>)"
    )
    header = (
        "yamllint disable\n"
        f"Inference hyperparameters of {provenance.recipe_path or 'a run'} "
        f"({kind}),\nwritten by `python -m lobes.export` from its "
        f"checkpoint {provenance.checkpoint}.\n{load}.\n"
        "Loading this file builds its objects and can run code: load only "
        "folders you trust."
    )
    yaml_text = _dump_yaml(inference, header)
    custom = custom_module_source(modules, (module, cls)) if modules else None
    if custom is not None:
        outputs["custom_module"] = CUSTOM_MODULE_FILE

    _prepare_out_folder(out_folder)
    files = []
    for name, state in states.items():
        torch.save(state, os.path.join(out_folder, f"{name}.ckpt"))
        files.append(f"{name}.ckpt")
    if custom is not None:
        with open(os.path.join(out_folder, CUSTOM_MODULE_FILE), "w",
                  encoding="utf-8") as fout:
            fout.write(custom)
        files.append(CUSTOM_MODULE_FILE)
    with open(os.path.join(out_folder, HPARAMS_FILE), "w",
              encoding="utf-8") as fout:
        fout.write(yaml_text)
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
    check_output_folder(out_folder, "the export's output folder argument")


def _prepare_out_folder(out_folder):
    """Create the output folder, without an earlier export's checkpoints."""
    os.makedirs(out_folder, exist_ok=True)
    for name in os.listdir(out_folder):
        if name.endswith(".ckpt") or name == CUSTOM_MODULE_FILE:
            os.remove(os.path.join(out_folder, name))


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.export``.

    Example
    -------
    >>> args = parse_args(["results/run", "exported/model"])
    >>> args.run_folder, args.out_folder, args.overwrite
    ('results/run', 'exported/model', False)
    """
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
    """Export a run; print the folder, its files and how to load it.

    Errors in the user's input end it with one line on stderr, status 2.

    Example
    -------
    >>> try:
    ...     main(["/no/such/run", "/tmp/lobes_export_doctest"])
    ... except SystemExit as err:
    ...     print(err.code)
    2
    """
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
