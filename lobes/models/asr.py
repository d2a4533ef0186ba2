"""CTC speech recognisers: a waveform encoder and a linear CTC head.

:class:`CTCRecognizer` maps waveforms ``[B, T]`` (16 kHz) and their relative
lengths to CTC log-probabilities ``[B, frames, vocabulary]``, as the CTC
recipes of SpeechBrain do (VoiceBank, LibriSpeech with wav2vec 2.0): an
encoder, one linear layer, a log-softmax. The encoder is one of

- :class:`SSLEncoder`: a self-supervised model (wav2vec 2.0, HuBERT,
  WavLM from HF transformers, loaded by
  :func:`lobes.ssl_features.load_ssl_model`, so with the same offline hint
  as the CR recipes) fine-tuned as a whole, its convolutional feature
  extractor frozen, as SpeechBrain's wav2vec 2.0 CTC recipes do;
- :class:`FbankEncoder`: filterbanks, per-utterance normalisation and a
  network such as SpeechBrain's CRDNN, small enough to learn the GRID
  vocabulary of the mini corpus on a CPU in minutes.

:func:`build_chosen` lets a YAML name both encoders and build only the one
it picks (an SSL model is loaded only when chosen). :class:`FrozenModule`
keeps a trained front end (an enhancer) fixed in front of a recogniser.

Authors
 * noise-robust-sb contributors 2025
"""

import torch

from lobes.ssl_features import load_ssl_model


def build_chosen(choice, options):
    """Build the option a string hparam names; the others stay unbuilt.

    Used in YAML as ``!apply:lobes.models.asr.build_chosen`` with
    ``options`` written as ``!name:`` partials (each option's class and
    arguments in the YAML): unlike :func:`lobes.recipe.choose`, which gets
    every option built, only the chosen one is, so an SSL model is loaded
    only when it is chosen.

    Example
    -------
    >>> import functools
    >>> options = {"fbank": functools.partial(dict, kind="fbank"),
    ...            "ssl": functools.partial(open, "/no/such/model")}
    >>> build_chosen("fbank", options)
    {'kind': 'fbank'}
    >>> build_chosen("mfcc", options)
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: 'mfcc' is not one of: fbank, ssl
    """
    from lobes.recipe import choose

    return choose(choice, options)()


def padding_mask(lengths, total):
    """``[B, total]`` booleans, True on the valid samples of each item.

    Example
    -------
    >>> padding_mask(torch.tensor([1.0, 0.5]), 4).int()
    tensor([[1, 1, 1, 1],
            [1, 1, 0, 0]], dtype=torch.int32)
    """
    valid = torch.round(lengths.float() * total).long().clamp(1, total)
    steps = torch.arange(total, device=lengths.device)
    return steps.unsqueeze(0) < valid.unsqueeze(1)


class FbankEncoder(torch.nn.Module):
    """Filterbanks, per-utterance normalisation, then a network.

    Arguments
    ---------
    compute_features : torch.nn.Module
        Waveforms ``[B, T]`` -> features ``[B, frames, n_mels]`` (e.g.
        ``speechbrain.lobes.features.Fbank``).
    normalize : torch.nn.Module
        ``normalize(features, lengths)`` (e.g. SpeechBrain's
        ``InputNormalization`` with ``norm_type: sentence``).
    network : torch.nn.Module
        ``[B, frames, n_mels]`` -> ``[B, frames', output_size]`` (e.g.
        ``speechbrain.lobes.models.CRDNN.CRDNN``).
    output_size : int
        The network's output dimension (what the CTC head reads).
    augment : list of torch.nn.Module, optional
        Applied in turn to the normalised features in training mode only
        (e.g. SpeechBrain's ``SpectrogramDrop`` along time and frequency,
        SpecAugment's masks).

    Example
    -------
    >>> from speechbrain.augment.freq_domain import SpectrogramDrop
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.processing.features import InputNormalization
    >>> encoder = FbankEncoder(
    ...     Fbank(n_mels=20), InputNormalization(norm_type="sentence"),
    ...     torch.nn.Identity(), output_size=20,
    ...     augment=[SpectrogramDrop(drop_count_low=1, dim=2)])
    >>> wavs, lengths = torch.randn(2, 16000), torch.tensor([1.0, 0.5])
    >>> encoder(wavs, lengths).shape
    torch.Size([2, 101, 20])
    >>> bool((encoder(wavs, lengths) == 0).all(dim=1).any())  # a band masked
    True
    >>> bool((encoder.eval()(wavs, lengths) == 0).all(dim=1).any())
    False
    """

    def __init__(self, compute_features, normalize, network, output_size,
                 augment=None):
        super().__init__()
        self.compute_features = compute_features
        self.normalize = normalize
        self.network = network
        self.output_size = int(output_size)
        self.augment = torch.nn.ModuleList(augment or [])

    def forward(self, wavs, lengths=None):
        """Encode waveforms ``[B, T]``; ``lengths`` relative (default 1)."""
        if lengths is None:
            lengths = torch.ones(wavs.shape[0], device=wavs.device)
        features = self.compute_features(wavs)
        features = self.normalize(features, lengths)
        if self.training:
            for augment in self.augment:
                features = augment(features)
        return self.network(features)


class SSLEncoder(torch.nn.Module):
    """A self-supervised speech model to fine-tune (HF transformers).

    Arguments
    ---------
    source : str
        Hub id (``microsoft/wavlm-base-plus``, ``facebook/hubert-base-ls960``,
        ``facebook/wav2vec2-base``) or a local folder written by
        ``save_pretrained``; loaded by
        :func:`lobes.ssl_features.load_ssl_model` (a failure is one line
        naming ``--ssl_source``). Its layer drop and time/feature masking
        are off.
    freeze : bool
        Keep the whole model fixed (eval mode, no gradients): only the head
        learns.
    freeze_feature_extractor : bool
        Keep the convolutional feature extractor fixed while the rest is
        fine-tuned (SpeechBrain's default for wav2vec 2.0 CTC).
    output_layer : int, optional
        Which hidden state to return (0: the input of the first transformer
        layer); default the model's last output.
    save_path : str, optional
        Cache folder for hub downloads.
    normalize_waveform : bool, optional
        Zero-mean unit-variance input (over each utterance's valid
        samples). Default: ``do_normalize`` of the model's
        ``preprocessor_config.json``.

    Example
    -------
    >>> import tempfile
    >>> from lobes.ssl_features import save_tiny_ssl_model
    >>> folder = save_tiny_ssl_model("hubert", tempfile.mkdtemp())
    >>> encoder = SSLEncoder(folder)
    >>> feats = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.6]))
    >>> feats.shape, encoder.output_size
    (torch.Size([2, 49, 32]), 32)
    >>> feats.sum().backward()
    >>> encoder.model.encoder.layers[0].attention.q_proj.weight.grad is None
    False
    >>> encoder.model.feature_extractor.conv_layers[0].conv.weight.grad
    """

    def __init__(self, source, freeze=False, freeze_feature_extractor=True,
                 output_layer=None, save_path=None, normalize_waveform=None):
        super().__init__()
        self.source = str(source)
        # Loading must not shift the experiment's random stream.
        with torch.random.fork_rng(devices=[]):
            self.model, preprocessor = load_ssl_model(source, save_path)
        if normalize_waveform is None:
            normalize_waveform = bool(preprocessor.get("do_normalize", False))
        self.normalize_waveform = bool(normalize_waveform)
        self.use_attention_mask = bool(
            preprocessor.get("return_attention_mask", False)
        )
        self.freeze = bool(freeze)
        self.output_layer = None if output_layer is None else int(
            output_layer
        )
        self.output_size = int(self.model.config.hidden_size)
        if self.freeze:
            self.model.requires_grad_(False)
            self.model.eval()
        elif freeze_feature_extractor:
            self.model.feature_extractor._freeze_parameters()

    def train(self, mode=True):
        """Set the mode; a frozen model stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def forward(self, wavs, lengths=None):
        """Hidden states ``[B, frames, hidden]`` of waveforms ``[B, T]``."""
        mask = None
        if lengths is not None:
            mask = padding_mask(lengths, wavs.shape[1])
        if self.normalize_waveform:
            valid = (torch.ones_like(wavs, dtype=torch.bool) if mask is None
                     else mask)
            count = valid.sum(dim=1, keepdim=True).clamp(min=1)
            mean = (wavs * valid).sum(dim=1, keepdim=True) / count
            var = (((wavs - mean) * valid) ** 2).sum(dim=1, keepdim=True)
            wavs = (wavs - mean) / torch.sqrt(var / count + 1e-7) * valid
        options = {}
        if self.use_attention_mask and mask is not None:
            options["attention_mask"] = mask.long()
        if self.output_layer is not None:
            options["output_hidden_states"] = True
        with torch.set_grad_enabled(torch.is_grad_enabled()
                                    and not self.freeze):
            out = self.model(wavs, return_dict=True, **options)
        if self.output_layer is not None:
            return out.hidden_states[self.output_layer]
        return out.last_hidden_state


class BandLimit(torch.nn.Module):
    """Telephone-band copies of some training utterances (augmentation).

    In training, each utterance is, with probability ``prob``, resampled
    to ``narrow_rate`` and back (its band above ``narrow_rate / 2`` is
    lost), so that one recogniser reads wide-band speech and the speech of
    8 kHz corpora (WHAM!) resampled to its rate. In eval mode it does
    nothing.

    Arguments
    ---------
    sample_rate : int
        The rate of the waveforms.
    narrow_rate : int
        The rate of the narrow band.
    prob : float
        Share of the training utterances made narrow-band.

    Example
    -------
    >>> band = BandLimit(16000, 8000, prob=1.0)
    >>> t = torch.arange(1600) / 16000
    >>> tone = torch.sin(2 * torch.pi * 6000 * t).repeat(2, 1)
    >>> float(band(tone)[:, 400:1200].abs().max()) < 0.05  # 6 kHz is gone
    True
    >>> torch.equal(band.eval()(tone), tone)
    True
    """

    def __init__(self, sample_rate=16000, narrow_rate=8000, prob=0.0):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.narrow_rate = int(narrow_rate)
        self.prob = float(prob)

    def forward(self, wavs):
        """``[B, T]`` waveforms, some of them band-limited in training."""
        if not self.training or self.prob <= 0:
            return wavs
        import torchaudio.functional as AF

        chosen = torch.rand(wavs.shape[0], device=wavs.device) < self.prob
        if not bool(chosen.any()):
            return wavs
        narrow = AF.resample(
            AF.resample(wavs[chosen], self.sample_rate, self.narrow_rate),
            self.narrow_rate, self.sample_rate,
        )[:, : wavs.shape[1]]
        narrow = torch.nn.functional.pad(
            narrow, (0, wavs.shape[1] - narrow.shape[1])
        )
        wavs = wavs.clone()
        wavs[chosen] = narrow
        return wavs


class CTCRecognizer(torch.nn.Module):
    """Encoder, linear CTC head, log-softmax.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``encoder(wavs, lengths)`` -> ``[B, frames, dim]``
        (:class:`FbankEncoder`, :class:`SSLEncoder`).
    head : torch.nn.Module
        ``[B, frames, dim]`` -> ``[B, frames, vocabulary]`` (e.g.
        ``speechbrain.nnet.linear.Linear``).
    dropout : float
        Dropout between the encoder and the head.
    augment : torch.nn.Module, optional
        Applied to the waveforms first (e.g. :class:`BandLimit`; it acts in
        training mode only).

    Example
    -------
    >>> class Frames(torch.nn.Module):
    ...     def forward(self, wavs, lengths=None):
    ...         return wavs.reshape(wavs.shape[0], -1, 160)
    >>> model = CTCRecognizer(Frames(), torch.nn.Linear(160, 5))
    >>> log_probs = model(torch.randn(2, 1600), torch.ones(2))
    >>> log_probs.shape, bool(torch.allclose(log_probs.exp().sum(-1),
    ...                                      torch.ones(2, 10)))
    (torch.Size([2, 10, 5]), True)
    """

    def __init__(self, encoder, head, dropout=0.0, augment=None):
        super().__init__()
        self.augment = augment
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(float(dropout))
        self.head = head

    def forward(self, wavs, lengths=None):
        """CTC log-probabilities ``[B, frames, vocabulary]``."""
        if self.augment is not None:
            wavs = self.augment(wavs)
        hidden = self.encoder(wavs, lengths)
        return torch.log_softmax(self.head(self.dropout(hidden)), dim=-1)


class FrozenModule(torch.nn.Module):
    """A trained module used as a fixed front end.

    Its parameters never get gradients, it always runs in eval mode (a
    Brain's ``modules.train()`` does not switch on its dropout) and without
    building a graph; its weights are still saved with the checkpoints
    that hold it.

    Example
    -------
    >>> layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout())
    >>> frozen = FrozenModule(layer).train()
    >>> x = torch.ones(1, 4, requires_grad=True)
    >>> out = frozen(x)
    >>> bool(torch.equal(out, frozen(x))), out.requires_grad, layer.training
    (True, False, False)
    """

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.module.requires_grad_(False)
        self.module.eval()

    def train(self, mode=True):
        """Keep the wrapped module in eval mode whatever ``mode``."""
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args, **kwargs):
        """The wrapped module's output, computed without gradients."""
        with torch.no_grad():
            return self.module(*args, **kwargs)
