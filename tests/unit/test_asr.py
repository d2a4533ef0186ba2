"""Speech recognition: error rates, decoding, the Brain's checks, the
transcripts of mini WHAM! and the speaker assignment of evaluate_asr.py."""

import importlib.util
import os

import pytest
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from lobes.brains.asr import ASRBrain
from lobes.data.mini_corpora import (
    WHAM_TRANSCRIPTS,
    generate,
    read_transcripts,
    wham_transcripts,
)
from lobes.errors import HparamsError, UserError
from lobes.losses.waveform import mse_loss
from lobes.models.asr import CTCRecognizer, SSLEncoder
from lobes.ssl_features import save_tiny_ssl_model
from lobes.transcription import (
    ErrorRates,
    character_encoder,
    decode_words,
    greedy_words,
    read_error_rate,
    source_utterances,
    text_tokens,
    word_errors,
)
from tests.recipe_runner import REPO

GRID = "BIN BLUE AT F TWO NOW"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_wer_and_cer_of_a_hand_made_example(tmp_path):
    rates = ErrorRates()
    # one substitution (AT -> IN) and one deletion (NOW): 2 of 6 words;
    # one insertion (AGAIN): 1 of 4 words. Together 3 errors in 10 words.
    rates.append(
        ["u1", "u2"],
        [["BIN", "BLUE", "IN", "F", "TWO"],
         ["SET", "RED", "BY", "A", "AGAIN"]],
        [GRID.split(), ["SET", "RED", "BY", "A"]],
    )
    summary = rates.summary()
    assert summary["WER"] == pytest.approx(30.0)
    assert rates.counts() == {"insertions": 1, "deletions": 1,
                              "substitutions": 1, "words": 10}
    # Characters with the word boundary as a token: u1 has 21 reference
    # tokens (AT -> IN: 2 substitutions; "_NOW" deleted: 4), u2 has 12
    # ("_AGAIN" inserted: 6); 12 edits in 33 tokens.
    assert summary["CER"] == pytest.approx(100 * 12 / 33)
    rates.write(str(tmp_path / "wer_test.txt"), str(tmp_path / "cer.txt"))
    assert read_error_rate(tmp_path / "wer_test.txt") == pytest.approx(30.0)
    assert word_errors(GRID.split(), "BIN BLUE IN F TWO".split()) == 2


def test_greedy_decoding_collapses_repeats_and_drops_blanks():
    encoder = character_encoder("ABIN ")
    letters = {c: encoder.lab2ind[c] for c in "ABIN "}
    # B B - I N N _ _ A - A  ->  "BIN AA"
    path = [letters["B"], letters["B"], 0, letters["I"], letters["N"],
            letters["N"], letters[" "], letters[" "], letters["A"], 0,
            letters["A"]]
    log_probs = torch.nn.functional.one_hot(
        torch.tensor([path + [0, 0]]), len(encoder)).float().log()
    lengths = torch.tensor([len(path) / (len(path) + 2)])
    assert greedy_words(log_probs, lengths, encoder) == [["BIN", "AA"]]
    assert decode_words(encoder, [text_tokens("BIN A", encoder)]) == [
        ["BIN", "A"]
    ]


def test_the_vocabulary_covers_voicebank_transcripts():
    encoder = character_encoder("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    assert len(encoder) == 29 and encoder.lab2ind["<blank>"] == 0
    tokens = text_tokens("IT'S  SIX", encoder)
    assert decode_words(encoder, [tokens]) == [["IT'S", "SIX"]]


def _brain(tmp_path, **hparams):
    class Frames(torch.nn.Module):
        def forward(self, wavs, lengths=None):
            return wavs.reshape(wavs.shape[0], -1, 40)

    recognizer = {"label_encoder": character_encoder("AB "),
                  "blank_index": 0, "ssl_lr": 1e-4,
                  "ctc_cost": lambda *a: torch.zeros(())}
    values = {"sample_rate": 16000, "front_end": "none",
              "input_signal": "noisy", "enhancement_weight": 0.0,
              "recognizer": recognizer,
              "objectives": {"compute_waveform_loss": mse_loss},
              "output_folder": str(tmp_path)}
    values.update(hparams)
    return ASRBrain(
        {"asr_model": CTCRecognizer(Frames(), torch.nn.Linear(40, 4)),
         "enhance_model": torch.nn.Identity()},
        lambda p: torch.optim.Adam(p, 1e-3), hparams=values,
    )


def test_brain_refuses_settings_that_do_nothing(tmp_path):
    with pytest.raises(HparamsError, match="need front_end: joint"):
        _brain(tmp_path, enhancement_weight=1.0)
    with pytest.raises(HparamsError, match="set input_signal: noisy"):
        _brain(tmp_path, front_end="frozen", input_signal="clean")
    with pytest.raises(HparamsError, match="front_end must be one of"):
        _brain(tmp_path, front_end="cascade")


def test_ssl_encoder_gets_its_own_learning_rate(tmp_path):
    folder = save_tiny_ssl_model("wav2vec2", str(tmp_path / "ssl"))
    encoder = SSLEncoder(folder)
    model = CTCRecognizer(encoder, torch.nn.Linear(encoder.output_size, 4))
    recognizer = {"label_encoder": character_encoder("AB "),
                  "blank_index": 0, "ssl_lr": 1e-4, "ctc_cost": None}
    brain = ASRBrain(
        {"asr_model": model, "enhance_model": torch.nn.Identity()},
        lambda p: torch.optim.Adam(p, 1e-3),
        hparams={"sample_rate": 16000, "front_end": "none",
                 "input_signal": "clean", "enhancement_weight": 0.0,
                 "recognizer": recognizer,
                 "objectives": {"compute_waveform_loss": mse_loss}},
    )
    brain.init_optimizers()
    groups = brain.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-4]
    assert sum(p.numel() for p in groups[1]["params"]) == sum(
        p.numel() for p in encoder.parameters())
    # The convolutional feature extractor stays frozen.
    assert not any(p.requires_grad for p in
                   encoder.model.feature_extractor.parameters())


def test_brain_learns_a_tiny_vocabulary(tmp_path):
    torch.manual_seed(0)
    import speechbrain as sb

    class Frames(torch.nn.Module):
        def forward(self, wavs, lengths=None):
            return wavs.reshape(wavs.shape[0], -1, 40)

    encoder = character_encoder("AB ")
    recognizer = {"label_encoder": encoder, "blank_index": 0,
                  "ssl_lr": 1e-4,
                  "ctc_cost": lambda *a: sb.nnet.losses.ctc_loss(*a, 0)}
    brain = ASRBrain(
        {"asr_model": CTCRecognizer(Frames(), torch.nn.Linear(40, 4)),
         "enhance_model": torch.nn.Identity()},
        lambda p: torch.optim.Adam(p, 0.05),
        hparams={"sample_rate": 16000, "front_end": "none",
                 "input_signal": "clean", "enhancement_weight": 0.0,
                 "recognizer": recognizer,
                 "objectives": {"compute_waveform_loss": mse_loss}},
    )
    data = {}
    for index, text in enumerate(["AB A", "B AB", "A B"]):
        wav = torch.randn(800)
        data[f"u{index}"] = {"noisy_sig": wav, "clean_sig": wav,
                             "words": text,
                             "tokens": torch.LongTensor(
                                 text_tokens(text, encoder))}
    dataset = DynamicItemDataset(
        data, output_keys=["id", "noisy_sig", "clean_sig", "words",
                           "tokens"])
    brain.fit(range(60), dataset, dataset, progressbar=False,
              train_loader_kwargs={"batch_size": 3})
    assert brain.last_stage_stats["WER"] == 0.0


def test_mini_wham_keeps_the_transcripts_of_its_sources(tmp_path):
    root = generate("wham", str(tmp_path / "wham"), seed=5, size="tiny")
    written = read_transcripts(os.path.join(root, WHAM_TRANSCRIPTS))
    mixtures = sorted(os.listdir(os.path.join(root, "wav8k", "max", "tt",
                                              "mix_both")))
    for name in mixtures:
        for utterance in source_utterances(name[:-4]):
            words = written[utterance].split()
            assert len(words) in (6, 12) and words == [
                w.upper() for w in words]
    # A corpus made before the file existed gets the same transcripts.
    os.remove(os.path.join(root, WHAM_TRANSCRIPTS))
    assert wham_transcripts(root) == written
    os.remove(os.path.join(root, "wav8k", "min", "tt", "mix_both",
                           mixtures[0]))
    with pytest.raises(UserError, match="not made by this generator"):
        wham_transcripts(root)


def _evaluate_asr():
    path = os.path.join(REPO, "recipes", "WHAM", "separation",
                        "evaluate_asr.py")
    spec = importlib.util.spec_from_file_location("evaluate_asr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_separated_speakers_are_assigned_by_pit_or_by_wer():
    module = _evaluate_asr()
    torch.manual_seed(0)
    sources = [torch.randn(800), torch.randn(800)]
    estimates = [sources[1] + 0.1 * torch.randn(800), sources[0]]
    references = [["A", "B"], ["C"]]
    assert module.assign(estimates, [["C"], ["A", "B"]], sources,
                         references, "pit") == [1, 0]
    # By WER, the output that reads like a speaker's words is theirs, even
    # against the SI-SNR order.
    assert module.assign(estimates, [["A", "B"], ["C"]], sources,
                         references, "best_wer") == [0, 1]
    with pytest.raises(HparamsError, match="assignment must be one of"):
        module.check_options({"assignment": "oracle", "references": [],
                              "separators": {}})
