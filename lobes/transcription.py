"""Transcription around the recipes: characters, data, decoding, WER.

What the CTC recipe (``recipes/Voicebank/ASR``) and the recognition of
separated speech (``recipes/WHAM/separation/evaluate_asr.py``) share:

- :func:`character_encoder`: SpeechBrain's ``CTCTextEncoder`` over the
  characters a YAML lists, the blank first;
- :func:`asr_datasets`: VoiceBank manifests (noisy and clean waveforms,
  transcript) as datasets with character tokens;
- :func:`transcribe`: greedy CTC decoding into words
  (``speechbrain.decoders.ctc_greedy_decode``);
- :class:`ErrorRates`: SpeechBrain's ``ErrorRateStats`` for the word and
  the character error rate, written as SpeechBrain's recipes write
  ``wer_test.txt``;
- :func:`trained_enhancer`: an enhancer of the VoiceBank recipes (a run
  folder, an exported folder or a hub id, through
  :func:`lobes.runs.load_trained_run`) as a recogniser's front end;
- :func:`load_recognizer`: a trained recogniser, for transcribing any
  waveforms (resampled to its rate), e.g. separated speakers;
  :func:`source_utterances` and :func:`word_errors` for the evaluation of
  separated speech.

Authors
 * noise-robust-sb contributors 2025
"""

import logging
import os

import speechbrain as sb
import torch
import torchaudio.functional as AF
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.utils.edit_distance import count_ops, op_table
from speechbrain.utils.metric_stats import ErrorRateStats

from lobes.data.audio import check_same_length, read_audio
from lobes.errors import HparamsError, ModelSourceError, UserError
from lobes.models.asr import FrozenModule
from lobes.runs import load_trained_run

logger = logging.getLogger(__name__)

#: Characters already reported as missing from the vocabulary.
_WARNED = set()


def character_encoder(characters, blank_index=0):
    """SpeechBrain's ``CTCTextEncoder`` over ``characters``, with a blank.

    Arguments
    ---------
    characters : str
        Every character the recogniser writes (the space separates words).
    blank_index : int
        Index of the CTC blank.

    Example
    -------
    >>> encoder = character_encoder("AB ", blank_index=0)
    >>> len(encoder), encoder.encode_sequence(list("BA B"))
    (4, [2, 1, 3, 2])
    >>> character_encoder("AAB")
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: characters lists 'A' twice: fix `characters`
    """
    characters = str(characters)
    for char in characters:
        if characters.count(char) > 1:
            raise HparamsError(
                f"characters lists {char!r} twice: fix `characters`"
            )
    encoder = CTCTextEncoder()
    encoder.insert_blank(index=int(blank_index))
    encoder.update_from_iterable(characters, sequence_input=False)
    encoder.expect_len(len(characters) + 1)
    return encoder


def text_tokens(words, label_encoder):
    """Character indices of a transcript; unknown characters are dropped.

    Each unknown character is logged once (a recogniser cannot write it, so
    its words count as errors).

    Example
    -------
    >>> text_tokens("BIN A1", character_encoder("ABIN "))
    [2, 3, 4, 5, 1]
    """
    known = label_encoder.lab2ind
    chars = list(" ".join(str(words).split()))
    unknown = sorted({c for c in chars if c not in known} - _WARNED)
    if unknown:
        _WARNED.update(unknown)
        logger.warning(
            "characters %s are not in the recogniser's `characters` and are "
            "left out of its targets", unknown,
        )
    return [known[c] for c in chars if c in known]


def asr_datasets(csv_files, label_encoder, sample_rate):
    """The train/valid/test datasets of the CTC recipe.

    Arguments
    ---------
    csv_files : dict
        ``{"train", "valid", "test"}`` -> CSVs with the columns
        ``ID, duration, noisy_wav, clean_wav, transcript`` (as
        :func:`lobes.data.prepare.prepare_voicebank` writes them).
    label_encoder : speechbrain.dataio.encoder.CTCTextEncoder
        From :func:`character_encoder`.
    sample_rate : int
        Expected rate of every file (another rate is a one-line error).

    Returns
    -------
    dict
        Split -> ``DynamicItemDataset`` with the keys ``id``,
        ``noisy_sig``, ``clean_sig``, ``words`` (the transcript) and
        ``tokens`` (its characters' indices, a ``LongTensor``); whole
        utterances, shortest first in valid and test.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("n", "c"):
    ...     write_audio(f"{folder}/{name}.wav", torch.zeros(1600), 16000)
    >>> path = f"{folder}/set.csv"
    >>> with open(path, "w") as fout:
    ...     _ = fout.write("ID,duration,noisy_wav,clean_wav,transcript\\n")
    ...     _ = fout.write(f"u1,0.1,{folder}/n.wav,{folder}/c.wav,BIN A\\n")
    >>> sets = asr_datasets({"train": path, "valid": path, "test": path},
    ...                     character_encoder("ABIN "), 16000)
    >>> item = sets["test"][0]
    >>> item["words"], item["tokens"].tolist(), item["clean_sig"].shape
    ('BIN A', [2, 3, 4, 5, 1], torch.Size([1600]))
    """
    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def audio_pipeline(noisy_wav, clean_wav):
        noisy = read_audio(noisy_wav, sample_rate=sample_rate)
        clean = read_audio(clean_wav, sample_rate=sample_rate)
        check_same_length([noisy, clean], [noisy_wav, clean_wav])
        yield noisy
        yield clean

    @sb.utils.data_pipeline.takes("transcript")
    @sb.utils.data_pipeline.provides("words", "tokens")
    def text_pipeline(transcript):
        words = " ".join(str(transcript).split())
        yield words
        yield torch.LongTensor(text_tokens(words, label_encoder))

    datasets = {}
    for split in ("train", "valid", "test"):
        dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=csv_files[split],
            dynamic_items=[audio_pipeline, text_pipeline],
            output_keys=["id", "noisy_sig", "clean_sig", "words", "tokens"],
        )
        if split != "train":  # less padding; the order does not matter
            dataset = dataset.filtered_sorted(sort_key="duration")
        datasets[split] = dataset
    return datasets


def decode_words(label_encoder, sequences):
    """Token sequences -> lists of words (the space splits them).

    Example
    -------
    >>> decode_words(character_encoder("ABIN "), [[2, 3, 4, 5, 1], []])
    [['BIN', 'A'], []]
    """
    return [
        "".join(label_encoder.decode_ndim(list(seq))).split()
        for seq in sequences
    ]


def greedy_words(log_probs, lengths, label_encoder, blank_index=0):
    """Greedy CTC decoding of ``[B, frames, vocabulary]`` into words.

    Example
    -------
    >>> encoder = character_encoder("AB ")
    >>> best = torch.tensor([[1, 1, 0, 1, 3, 2, 0]])  # A A - A _ B -
    >>> log_probs = torch.nn.functional.one_hot(best, 4).float().log()
    >>> greedy_words(log_probs, torch.ones(1), encoder)
    [['AA', 'B']]
    """
    sequences = ctc_greedy_decode(log_probs, lengths, blank_id=blank_index)
    return decode_words(label_encoder, sequences)


@torch.no_grad()
def transcribe(model, wavs, lengths, label_encoder, blank_index=0):
    """Words a CTC recogniser hears in waveforms ``[B, T]`` (greedy).

    Example
    -------
    >>> from lobes.models.asr import CTCRecognizer
    >>> class Frames(torch.nn.Module):
    ...     def forward(self, wavs, lengths=None):
    ...         return wavs.reshape(wavs.shape[0], -1, 4)
    >>> model = CTCRecognizer(Frames(), torch.nn.Identity()).eval()
    >>> wav = torch.nn.functional.one_hot(torch.tensor([1, 0, 3, 2]), 4)
    >>> transcribe(model, wav.float().reshape(1, 16) * 9, torch.ones(1),
    ...            character_encoder("AB "))
    [['A', 'B']]
    """
    log_probs = model(wavs, lengths)
    return greedy_words(log_probs, lengths, label_encoder, blank_index)


class ErrorRates:
    """Word and character error rates with SpeechBrain's ``ErrorRateStats``.

    The CER splits words into characters with the word boundary as a
    token, as SpeechBrain's ASR recipes compute it
    (``ErrorRateStats(split_tokens=True)``).

    Example
    -------
    >>> rates = ErrorRates()
    >>> rates.append(["u1"], [["BIN", "BLUE", "IN", "F", "TWO"]],
    ...              [["BIN", "BLUE", "AT", "F", "TWO", "NOW"]])
    >>> {k: round(v, 2) for k, v in rates.summary().items()}
    {'WER': 33.33, 'CER': 28.57, 'utterances': 1}
    """

    def __init__(self):
        self.words = ErrorRateStats()
        self.chars = ErrorRateStats(split_tokens=True)

    def append(self, ids, predicted, targets):
        """Add utterances: ids, predicted and reference word lists."""
        ids = [str(i) for i in ids]
        self.words.append(ids, predicted, targets)
        self.chars.append(ids, predicted, targets)

    def __len__(self):
        return len(self.words.scores)

    def summary(self):
        """``{"WER": %, "CER": %, "utterances": n}`` (NaN rates if empty)."""
        if not len(self):
            return {"WER": float("nan"), "CER": float("nan"),
                    "utterances": 0}
        return {
            "WER": float(self.words.summarize("error_rate")),
            "CER": float(self.chars.summarize("error_rate")),
            "utterances": len(self),
        }

    def counts(self):
        """Word errors in detail: insertions, deletions, substitutions and
        the number of reference words (``words``).

        Example
        -------
        >>> rates = ErrorRates()
        >>> rates.append(["u"], [["A", "B", "D"]], [["A", "C"]])
        >>> rates.counts()
        {'insertions': 1, 'deletions': 0, 'substitutions': 1, 'words': 2}
        """
        if not len(self):
            return {"insertions": 0, "deletions": 0, "substitutions": 0,
                    "words": 0}
        stats = self.words.summarize()
        counts = {key: int(stats[key]) for key in (
            "insertions", "deletions", "substitutions"
        )}
        counts["words"] = int(stats["num_scored_tokens"])
        return counts

    def write(self, wer_file, cer_file=None):
        """Write the per-utterance alignments, SpeechBrain's ``wer_*.txt``."""
        for stats, path in ((self.words, wer_file), (self.chars, cer_file)):
            if path is None:
                continue
            os.makedirs(os.path.dirname(os.path.abspath(path)),
                        exist_ok=True)
            with open(path, "w", encoding="utf-8") as fout:
                stats.write_stats(fout)


def read_error_rate(path):
    """The error rate on the ``%WER`` line of a ``wer_*.txt`` file.

    Example
    -------
    >>> import tempfile
    >>> rates = ErrorRates()
    >>> rates.append(["u"], [["A", "B"]], [["A", "C"]])
    >>> path = os.path.join(tempfile.mkdtemp(), "wer_test.txt")
    >>> rates.write(path)
    >>> read_error_rate(path)
    50.0
    """
    with open(path, encoding="utf-8") as fin:
        for line in fin:
            if line.startswith("%WER"):
                return float(line.split()[1])
    raise ValueError(f"{path}: no %WER line")


def trained_enhancer(source, trainable=False):
    """An enhancer of the VoiceBank recipes, as a recogniser's front end.

    Arguments
    ---------
    source : str
        The output folder of a finished run of ``recipes/Voicebank/enhance``,
        a folder written by ``python -m lobes.export`` from one, or a hub
        id (loaded by :func:`lobes.runs.load_trained_run`).
    trainable : bool
        ``False``: frozen (:class:`lobes.models.asr.FrozenModule`, never
        trained, eval mode); ``True``: fine-tuned with the recogniser.

    Raises
    ------
    ModelSourceError
        One line naming ``--enhancer``.

    Example
    -------
    >>> trained_enhancer("/no/such/run")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: --enhancer=/no/such/run: no such folder; \
...; train one with recipes/Voicebank/enhance/train.py first
    """
    try:
        run = load_trained_run(source, ["enhance_model"], kind="enhancement")
    except ModelSourceError as err:
        message = str(err)
        if message.startswith(str(source)):
            message = message[len(str(source)):].lstrip(":").strip()
        raise ModelSourceError(
            f"--enhancer={source}: {message}; train one with "
            "recipes/Voicebank/enhance/train.py first"
        ) from None
    model = run.modules["enhance_model"]
    if not trainable:
        return FrozenModule(model)
    model.requires_grad_(True)
    return model


def word_errors(reference, hypothesis):
    """Word edits (insertions + deletions + substitutions) of a hypothesis.

    Example
    -------
    >>> word_errors("BIN BLUE AT F TWO NOW".split(), "BIN BLUE IN F".split())
    3
    """
    ops = count_ops(op_table(list(reference), list(hypothesis)))
    return int(ops["insertions"] + ops["deletions"] + ops["substitutions"])


class Recognizer:
    """A trained CTC recogniser of ``recipes/Voicebank/ASR``, for inference.

    Use :func:`load_recognizer`. A recogniser trained behind an enhancer
    (``front_end`` frozen or joint) runs with that enhancer in front, as in
    its training.

    Arguments
    ---------
    asr_model : torch.nn.Module
        Waveforms and lengths -> CTC log-probabilities.
    label_encoder : speechbrain.dataio.encoder.CTCTextEncoder
        Its characters.
    blank_index : int
        The CTC blank.
    sample_rate : int
        The rate it was trained at.
    front_end : torch.nn.Module, optional
        The enhancer in front of it.
    device : str
        Where the models are.

    Example
    -------
    >>> from lobes.models.asr import CTCRecognizer
    >>> class Frames(torch.nn.Module):
    ...     def forward(self, wavs, lengths=None):
    ...         return wavs.reshape(wavs.shape[0], -1, 4)
    >>> recognizer = Recognizer(CTCRecognizer(Frames(), torch.nn.Identity()),
    ...                         character_encoder("AB "), 0, 16000)
    >>> wav = torch.nn.functional.one_hot(torch.tensor([1, 0, 3, 2]), 4)
    >>> recognizer.transcribe([wav.float().reshape(16) * 9], 16000)
    [['A', 'B']]
    """

    def __init__(self, asr_model, label_encoder, blank_index, sample_rate,
                 front_end=None, device="cpu"):
        self.device = device
        self.asr_model = asr_model.to(device).eval()
        self.label_encoder = label_encoder
        self.blank_index = int(blank_index)
        self.sample_rate = int(sample_rate)
        self.front_end = None
        if front_end is not None:
            self.front_end = front_end.to(device).eval()

    @torch.no_grad()
    def transcribe(self, signals, sample_rate):
        """Words heard in each 1-D waveform (resampled to the model's rate).

        Arguments
        ---------
        signals : list of torch.Tensor
            Waveforms ``[T_i]``, transcribed together as one padded batch.
        sample_rate : int
            Their rate; resampled to :attr:`sample_rate` when it differs.

        Returns
        -------
        list of list of str
        """
        device = self.device
        signals = [torch.as_tensor(s).float().reshape(-1) for s in signals]
        if int(sample_rate) != self.sample_rate:
            signals = [AF.resample(s, int(sample_rate), self.sample_rate)
                       for s in signals]
        longest = max(s.shape[0] for s in signals)
        wavs = torch.stack([
            torch.nn.functional.pad(s, (0, longest - s.shape[0]))
            for s in signals
        ]).to(device)
        lengths = torch.tensor(
            [s.shape[0] / longest for s in signals], device=device
        )
        if self.front_end is not None:
            wavs = self.front_end(wavs)
        return transcribe(self.asr_model, wavs, lengths, self.label_encoder,
                          self.blank_index)


def load_recognizer(source, device="cpu"):
    """Load a trained recogniser of ``recipes/Voicebank/ASR``.

    Arguments
    ---------
    source : str
        The output folder of a finished run of that recipe (its best
        checkpoint is loaded by :func:`lobes.runs.load_trained_run`).
    device : str
        Torch device.

    Returns
    -------
    Recognizer

    Raises
    ------
    ModelSourceError
        One line, when the folder holds no such run.

    Example
    -------
    >>> load_recognizer("/no/such/run")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
    """
    run = load_trained_run(
        source, ["asr_model", "enhance_model"], kind="speech recognition"
    )
    experiment = run.experiment
    recognizer = experiment.get("recognizer")
    if not isinstance(recognizer, dict) or "label_encoder" not in recognizer:
        raise ModelSourceError(
            f"{source}: not a run of recipes/Voicebank/ASR (no recognizer "
            "in its hyperparams.yaml)"
        )
    front_end = None
    if experiment.get("front_end", "none") != "none":
        front_end = run.modules["enhance_model"]
    return Recognizer(
        run.modules["asr_model"], recognizer["label_encoder"],
        recognizer["blank_index"], experiment["sample_rate"], front_end,
        device=device,
    )


def source_utterances(mixture_id):
    """The two source utterance ids of a WHAM! mixture name.

    WHAM! (and wsj0-2mix) name a mixture ``<s1 id>_<gain>_<s2 id>_<gain>``.

    Raises
    ------
    UserError
        One line, for a name of another form.

    Example
    -------
    >>> source_utterances("01ac0101_0.6430_02gc0103_-0.6430")
    ('01ac0101', '02gc0103')
    >>> source_utterances("mixture")
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: mixture: not a WHAM! mixture name ...
    """
    parts = str(mixture_id).split("_")
    if len(parts) != 4:
        raise UserError(
            f"{mixture_id}: not a WHAM! mixture name "
            "(<s1 id>_<gain>_<s2 id>_<gain>); the transcripts cannot be "
            "matched to its speakers"
        )
    return parts[0], parts[2]
