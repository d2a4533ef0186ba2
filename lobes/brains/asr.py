"""The Brain of the noise-robust speech recognition recipes.

:class:`ASRBrain` trains a CTC recogniser of characters
(:class:`lobes.models.asr.CTCRecognizer`) behind a front end
(a ``recipes/Voicebank/ASR`` recipe YAML):

- ``none``: the recogniser hears the noisy or the clean speech
  (``input_signal``);
- ``frozen``: a trained enhancer (:func:`lobes.transcription.trained_enhancer`)
  enhances the noisy speech first and is never trained;
- ``joint``: the enhancer is fine-tuned with the recogniser on

      loss = CTC + enhancement_weight x waveform loss(enhanced, clean)
                 + cr_weight x CR(enhanced; clean, negatives)

The enhancer's objectives are those of the enhancement recipes: their
waveform loss, and their CR as the same composable
:class:`lobes.objectives.ContrastiveObjective` the enhancement Brain holds
(the frozen SSL space, the negatives and their curriculum, the feature
cache of the clean and noisy features, the safe start of
``cr_ramp_epochs``); here every example is a whole utterance, so the
cached features never change either.

Validation and test decode greedily and compute SpeechBrain's
``ErrorRateStats`` (WER, and CER over characters); the test writes
``wer_test.txt`` and ``cer_test.txt`` as SpeechBrain's ASR recipes write
``wer_test.txt``. The SSL encoder (if any) gets its own learning rate,
``ssl_lr``, as in SpeechBrain's wav2vec 2.0 CTC recipes.

Authors
 * noise-robust-sb contributors 2025
"""

import logging

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from lobes.brains.base import RecipeBrain
from lobes.errors import HparamsError
from lobes.models.asr import SSLEncoder
from lobes.objectives import ContrastiveObjective
from lobes.transcription import ErrorRates, greedy_words

logger = logging.getLogger(__name__)

#: Values of ``front_end``.
FRONT_ENDS = ("none", "frozen", "joint")
#: Values of ``input_signal``.
INPUT_SIGNALS = ("noisy", "clean")


class ASRBrain(RecipeBrain):
    """CTC training behind a front end, with WER and CER.

    Hparams it reads (a ``recipes/Voicebank/ASR`` recipe YAML):
    ``sample_rate``, ``front_end``, ``input_signal``,
    ``enhancement_weight``, ``test_wer_file``, ``test_cer_file``, the
    ``recognizer`` namespace (``label_encoder``, ``blank_index``,
    ``ctc_cost``, ``ssl_lr``) and the enhancer's ``objectives``
    (``hparams/enhancement/cr.yaml``).

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``; ``modules`` must hold
        ``asr_model`` and ``enhance_model`` (``torch.nn.Identity`` without a
        front end). The data provide ``noisy_sig``, ``clean_sig``,
        ``words`` and ``tokens`` (:func:`lobes.transcription.asr_datasets`).
    ssl_features : torch.nn.Module, optional
        CR's frozen feature space (needed when ``cr_weight > 0``).

    Example
    -------
    >>> import torch
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> from lobes.transcription import character_encoder
    >>> from lobes.losses.waveform import mse_loss
    >>> from lobes.models.asr import CTCRecognizer
    >>> class Frames(torch.nn.Module):
    ...     def forward(self, wavs, lengths=None):
    ...         return wavs.reshape(wavs.shape[0], -1, 40)
    >>> encoder = character_encoder("AB ")
    >>> recognizer = {
    ...     "label_encoder": encoder, "blank_index": 0, "ssl_lr": 1e-4,
    ...     "ctc_cost": lambda *a: sb.nnet.losses.ctc_loss(*a, 0)}
    >>> brain = ASRBrain(
    ...     {"asr_model": CTCRecognizer(Frames(), torch.nn.Linear(40, 4)),
    ...      "enhance_model": torch.nn.Identity()},
    ...     lambda p: torch.optim.Adam(p, 1e-2),
    ...     hparams={"sample_rate": 16000, "front_end": "none",
    ...              "input_signal": "clean", "enhancement_weight": 0.0,
    ...              "recognizer": recognizer,
    ...              "objectives": {"compute_waveform_loss": mse_loss}})
    >>> wav = torch.randn(400)
    >>> data = DynamicItemDataset(
    ...     {"u1": {"noisy_sig": wav, "clean_sig": wav, "words": "AB A",
    ...             "tokens": torch.LongTensor([1, 2, 3, 1])}},
    ...     output_keys=["id", "noisy_sig", "clean_sig", "words", "tokens"])
    >>> brain.fit(range(2), data, data, progressbar=False)
    >>> sorted(brain.last_stage_stats)
    ['CER', 'WER', 'loss']
    """

    def __init__(self, *args, ssl_features=None, **kwargs):
        super().__init__(*args, **kwargs)
        objectives = self.hparams.objectives
        self.compute_waveform_loss = objectives["compute_waveform_loss"]
        self.contrastive = ContrastiveObjective.from_objectives(
            objectives, ssl_features=ssl_features,
            sample_rate=int(self.hparams.sample_rate),
        )
        self._epoch = None
        if self.contrastive.enabled:
            self.contrastive.setup(
                self.device,
                valid_metrics=self.training.get("valid_metrics") or [],
                experiment=vars(self.hparams),
            )
        self.front_end = str(self.hparams.front_end)
        self.input_signal = str(self.hparams.input_signal)
        if self.front_end not in FRONT_ENDS:
            raise HparamsError(
                f"front_end must be one of {', '.join(FRONT_ENDS)}, got "
                f"'{self.front_end}'"
            )
        if self.input_signal not in INPUT_SIGNALS:
            raise HparamsError(
                f"input_signal must be one of {', '.join(INPUT_SIGNALS)}, "
                f"got '{self.input_signal}'"
            )
        if self.front_end != "none" and self.input_signal != "noisy":
            raise HparamsError(
                f"front_end {self.front_end} enhances the noisy speech: set "
                "input_signal: noisy"
            )
        self.enhancement_weight = float(
            self.hparams.enhancement_weight or 0.0
        )
        if self.front_end != "joint" and (
            self.enhancement_weight > 0 or self.contrastive.enabled
        ):
            raise HparamsError(
                "enhancement_weight and cr_weight train the enhancer: they "
                f"need front_end: joint (got front_end: {self.front_end})"
            )
        recognizer = self.hparams.recognizer
        self.label_encoder = recognizer["label_encoder"]
        self.blank_index = int(recognizer["blank_index"])
        self.ctc_cost = recognizer["ctc_cost"]
        self.error_rates = None

    @property
    def training(self):
        """The recipe's ``training`` namespace (an empty one if none)."""
        return getattr(self.hparams, "training", None) or {}

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; first binds CR's feature cache to the
        data and models it will hold features of (disk mode)."""
        self.contrastive.bind(
            train_set, segment_length=self.training.get("segment_length"),
            crop_seed=self.training.get("crop_seed"),
        )
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    # ------------------------------------------------------------------
    # Optimiser: the SSL encoder's own learning rate
    # ------------------------------------------------------------------
    def init_optimizers(self):
        """One optimiser; the SSL encoder's parameters at ``ssl_lr``."""
        ssl = {
            id(param)
            for module in self.modules.modules()
            if isinstance(module, SSLEncoder)
            for param in module.parameters()
        }
        if not ssl or self.opt_class is None:
            return super().init_optimizers()
        params = list(self.modules.parameters())
        self.optimizer = self.opt_class([
            {"params": [p for p in params if id(p) not in ssl]},
            {"params": [p for p in params if id(p) in ssl],
             "lr": float(self.hparams.recognizer["ssl_lr"])},
        ])
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
        return None

    # ------------------------------------------------------------------
    # Forward and losses
    # ------------------------------------------------------------------
    def compute_forward(self, batch, stage):
        """CTC log-probabilities of the batch (and the enhanced speech)."""
        batch = batch.to(self.device)
        signal, lengths = getattr(batch, f"{self.input_signal}_sig")
        enhanced = None
        if self.front_end != "none":
            enhanced = self.modules.enhance_model(signal)
            signal = enhanced
        log_probs = self.modules.asr_model(signal, lengths)
        return log_probs, enhanced

    def compute_objectives(self, predictions, batch, stage):
        """CTC (+ the enhancer's objectives when joint); WER when not
        training."""
        log_probs, enhanced = predictions
        tokens, token_lengths = batch.tokens
        noisy, lengths = batch.noisy_sig
        loss = self.ctc_cost(log_probs, tokens, lengths, token_lengths)
        if self.front_end == "joint":
            clean, _ = batch.clean_sig
            self.add_stat("ctc", loss)
            if self.enhancement_weight > 0:
                waveform_loss = self.compute_waveform_loss(
                    enhanced, clean, lengths
                )
                self.add_stat("waveform_loss", waveform_loss)
                loss = loss + self.enhancement_weight * waveform_loss
            if stage == sb.Stage.TRAIN and self.contrastive.enabled:
                loss, _ = self.contrastive.regularize(
                    loss, enhanced, clean, noisy, lengths, batch.id,
                    self.modules.enhance_model.parameters(), epoch=self._epoch,
                    step=self.step, steps=self.train_batches, log=self.add_stat,
                )
        if stage != sb.Stage.TRAIN:
            predicted = greedy_words(
                log_probs.detach(), lengths, self.label_encoder,
                self.blank_index,
            )
            targets = [str(words).split() for words in batch.words]
            self.error_rates.append(batch.id, predicted, targets)
        return loss

    # ------------------------------------------------------------------
    # Stage hooks
    # ------------------------------------------------------------------
    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; fix CR's negative weights for the epoch; new
        error-rate counts for valid and test."""
        super().on_stage_start(stage, epoch)
        self._epoch = epoch
        self.contrastive.start_stage(stage, epoch)
        if stage != sb.Stage.TRAIN:
            self.error_rates = ErrorRates()

    def stage_statistics(self, stage):
        """The averaged statistics, and WER and CER (%) outside training."""
        stats = super().stage_statistics(stage)
        if stage != sb.Stage.TRAIN and self.error_rates is not None and len(
            self.error_rates
        ):
            summary = self.error_rates.summary()
            stats["WER"] = summary["WER"]
            stats["CER"] = summary["CER"]
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Write ``wer_test.txt`` and ``cer_test.txt`` after the test; log
        CR's negative weights after training."""
        if stage == sb.Stage.TEST and if_main_process():
            self.error_rates.write(
                self.hparams.test_wer_file, self.hparams.test_cer_file
            )
            summary = self.error_rates.summary()
            logger.info(
                "Test WER %.2f %%, CER %.2f %% (%d utterances) written to %s",
                summary["WER"], summary["CER"], summary["utterances"],
                self.hparams.test_wer_file,
            )
        stats = self.contrastive.end_stage(
            stage, epoch, lambda: self.stage_statistics(stage)
        )
        for name, value in stats.items():
            self.add_stat(name, value)
        super().on_stage_end(stage, stage_loss, epoch)
