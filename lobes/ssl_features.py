"""Frozen self-supervised speech representations that pass gradients.

Contrastive regularization (METHODS.md section 2) compares the enhanced
waveform with the clean speech and with negatives inside the feature space
of a frozen self-supervised model (WavLM, HuBERT or wav2vec 2.0 from HF
transformers). The model's weights never change and it always runs in eval
mode (no dropout, no SpecAugment-style masking, no LayerDrop), yet the
gradient of the loss must reach the enhanced waveform through it. That is why
this module does not use SpeechBrain's HF wrappers with ``freeze=True``:
they run the model under ``torch.no_grad()``, which silently cuts the
gradient.

:func:`save_tiny_ssl_model` writes a genuinely tiny randomly initialised
model (about 45k parameters) to a folder, for tests, recipe tests and
benchmarks, where the real checkpoints cannot be downloaded.
"""

import hashlib
import json
import os
import socket
import urllib.parse

import torch
import torchaudio

from lobes.errors import HparamsError, ModelSourceError

#: The sample rate every supported self-supervised model expects.
SSL_SAMPLE_RATE = 16000

#: ``config.model_type`` values of the supported model families.
SUPPORTED_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2")

_HUB_PROBE_TIMEOUT_S = 3.0


def _source_hint(source, why):
    """Return the one-line message of a :class:`ModelSourceError`."""
    return (
        f"cannot load SSL model '{source}' ({why}); download it elsewhere "
        "(e.g. huggingface-cli download <id> --local-dir <folder>) and pass "
        "--ssl_source=<local folder>"
    )


def _looks_like_path(source):
    """Whether ``source`` names a folder rather than a hub id."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or "\\" in source
    )


def _hub_reachable():
    """Probe the hub endpoint for a few seconds instead of long retries."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), _HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _quiet_transformers():
    """Silence transformers' progress bars; returns a function restoring them.

    Example
    -------
    >>> restore = _quiet_transformers()
    >>> restore()
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    def restore():
        if was_enabled:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)

    return restore


def load_ssl_model(source, save_path=None):
    """Load a WavLM, HuBERT or wav2vec 2.0 model from a folder or hub id.

    A local folder is read directly. A hub id is first looked up in the
    local cache (``save_path`` or the HF default); only if it is not there,
    and ``HF_HUB_OFFLINE`` is not set, and the hub answers within a few
    seconds, is it downloaded. Every failure is a one-line
    :class:`~lobes.errors.ModelSourceError` that names ``--ssl_source``.

    Arguments
    ---------
    source : str
        A local folder written by ``save_pretrained`` or a hub id such as
        ``microsoft/wavlm-base-plus``.
    save_path : str, optional
        The cache folder for hub downloads (``cache_dir``).

    Returns
    -------
    model : transformers.PreTrainedModel
        The base model (``WavLMModel``, ``HubertModel`` or ``Wav2Vec2Model``).
    preprocessor : dict
        The folder's ``preprocessor_config.json`` contents, or ``{}``.

    Example
    -------
    >>> import tempfile
    >>> folder = save_tiny_ssl_model("hubert", tempfile.mkdtemp())
    >>> model, _ = load_ssl_model(folder)
    >>> type(model).__name__
    'HubertModel'
    >>> load_ssl_model(folder + "/missing")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ...pass --ssl_source=<local folder>
    """
    from transformers import AutoConfig, AutoModel

    source = str(source)
    is_folder = os.path.isdir(os.path.expanduser(source))
    if is_folder:
        source = os.path.expanduser(source)
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ModelSourceError(
                _source_hint(source, "the folder has no config.json")
            )
    elif _looks_like_path(source):
        raise ModelSourceError(_source_hint(source, "no such folder"))

    restore = _quiet_transformers()
    try:
        options = {"cache_dir": save_path}
        try:
            config = AutoConfig.from_pretrained(
                source, local_files_only=True, **options
            )
        except (OSError, ValueError) as err:
            if is_folder:
                raise ModelSourceError(
                    _source_hint(source, f"invalid config.json: {err}")
                ) from None
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
            if offline:
                raise ModelSourceError(
                    _source_hint(source, "not cached and HF_HUB_OFFLINE set")
                ) from None
            if not _hub_reachable():
                raise ModelSourceError(
                    _source_hint(source, "not cached and no network")
                ) from None
            options["local_files_only"] = False
            try:
                config = AutoConfig.from_pretrained(source, **options)
            except (OSError, ValueError) as err2:
                why = " ".join(str(err2).split())[:120]
                raise ModelSourceError(_source_hint(source, why)) from None
        else:
            options["local_files_only"] = True
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelSourceError(
                _source_hint(
                    source,
                    f"model type '{config.model_type}' is not one of "
                    f"{', '.join(SUPPORTED_MODEL_TYPES)}",
                )
            )
        # Nothing stochastic may happen even if someone flips train mode.
        for key in ("layerdrop", "mask_time_prob", "mask_feature_prob"):
            if hasattr(config, key):
                setattr(config, key, 0.0)
        config.apply_spec_augment = False
        try:
            model = AutoModel.from_pretrained(source, config=config, **options)
        except (OSError, ValueError, RuntimeError) as err:
            why = " ".join(str(err).split())[:120]
            raise ModelSourceError(_source_hint(source, why)) from None
        preprocessor = _read_preprocessor(source, options)
    finally:
        restore()
    return model, preprocessor


def _read_preprocessor(source, options):
    """Return the feature extractor's settings, or ``{}`` if there are none."""
    if os.path.isdir(source):
        path = os.path.join(source, "preprocessor_config.json")
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as fin:
            return json.load(fin)
    try:
        from transformers import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(source, **options)
    except (OSError, ValueError):
        return {}
    return extractor.to_dict()


class FrozenSSLFeatures(torch.nn.Module):
    """Hidden layers of a frozen SSL speech model, differentiable in the input.

    Arguments
    ---------
    source : str
        Hub id (``microsoft/wavlm-base-plus``, ``facebook/hubert-base-ls960``,
        ``facebook/wav2vec2-base``) or a local folder holding a model saved
        with ``save_pretrained``. The model class follows the config.
    layers : list of int, optional
        Indices into the model's hidden states: 0 is the input of the first
        transformer layer (CNN features after projection), ``i`` the output
        of transformer layer ``i``. Default: every transformer layer,
        ``1 .. num_hidden_layers``. Exclusive with ``layer_groups``.
    layer_groups : list of list of int, optional
        Each group's hidden states are summed into one output, e.g.
        ``[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]`` (METHODS.md:
        twelve transformer layers in four groups of three).
    input_sample_rate : int
        The rate of the waveforms given to :meth:`forward`; anything other
        than 16 kHz is resampled (differentiably) first.
    save_path : str, optional
        Cache folder for hub downloads.
    normalize_waveform : bool, optional
        Normalise each waveform to zero mean and unit variance first, as the
        model's feature extractor does in training. Default: read
        ``do_normalize`` from the model's ``preprocessor_config.json``
        (``False`` for WavLM Base+ and HuBERT Base, ``True`` for
        wav2vec 2.0 Base), ``False`` when there is none.

    Example
    -------
    >>> import tempfile
    >>> folder = save_tiny_ssl_model("wavlm", tempfile.mkdtemp())
    >>> ssl = FrozenSSLFeatures(folder, layer_groups=[[1, 2], [3, 4]])
    >>> wav = torch.randn(2, 4000, requires_grad=True)
    >>> feats = ssl(wav)
    >>> [tuple(f.shape) for f in feats]
    [(2, 12, 32), (2, 12, 32)]
    >>> feats[0].sum().backward()
    >>> wav.grad.abs().sum() > 0, ssl.model.training
    (tensor(True), False)
    """

    def __init__(
        self,
        source="microsoft/wavlm-base-plus",
        layers=None,
        layer_groups=None,
        input_sample_rate=SSL_SAMPLE_RATE,
        save_path=None,
        normalize_waveform=None,
    ):
        super().__init__()
        if layers is not None and layer_groups is not None:
            raise HparamsError(
                "FrozenSSLFeatures: give either layers or layer_groups, "
                "not both"
            )
        self.source = str(source)
        self.input_sample_rate = int(input_sample_rate)
        # A frozen model's loading must not shift the experiment's random
        # stream (initialisations, data order) wherever the YAML builds it.
        with torch.random.fork_rng(devices=[]):
            self.model, preprocessor = load_ssl_model(source, save_path)
        if normalize_waveform is None:
            normalize_waveform = bool(preprocessor.get("do_normalize", False))
        self.normalize_waveform = bool(normalize_waveform)
        num_layers = self.model.config.num_hidden_layers
        if layer_groups is None:
            chosen = range(1, num_layers + 1) if layers is None else layers
            layer_groups = [[int(index)] for index in chosen]
        self.layer_groups = [[int(i) for i in group] for group in layer_groups]
        if not self.layer_groups or not all(self.layer_groups):
            raise HparamsError(
                "FrozenSSLFeatures: layers/layer_groups must not be empty"
            )
        for group in self.layer_groups:
            for index in group:
                if not 0 <= index <= num_layers:
                    raise HparamsError(
                        f"FrozenSSLFeatures: layer {index} does not exist in "
                        f"'{self.source}' (hidden states 0..{num_layers}); "
                        "fix ssl_layers/ssl_layer_groups"
                    )
        self._drop_unused_layers(max(max(g) for g in self.layer_groups))
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.eval()

    def _drop_unused_layers(self, deepest):
        """Keep only the transformer layers that the chosen outputs need.

        With the post-layer-norm encoder of the base models, hidden state
        ``i`` does not depend on later layers, so dropping them changes no
        output and saves their computation. The pre-layer-norm encoder
        (``do_stable_layer_norm``, large models) normalises the last hidden
        state, so there nothing is dropped.
        """
        config = self.model.config
        if getattr(config, "do_stable_layer_norm", False):
            return
        encoder_layers = self.model.encoder.layers
        if deepest < len(encoder_layers):
            self.model.encoder.layers = encoder_layers[: max(deepest, 1)]
            config.num_hidden_layers = max(deepest, 1)

    @property
    def num_outputs(self):
        """The number of feature tensors :meth:`forward` returns."""
        return len(self.layer_groups)

    def fingerprint(self):
        """A hash of what the features depend on: the model's config and
        weights, the input normalisation and the layers (computed once).

        Example
        -------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> a = FrozenSSLFeatures(save_tiny_ssl_model("wavlm", folder))
        >>> b = FrozenSSLFeatures(save_tiny_ssl_model("wavlm", folder, 1))
        >>> a.fingerprint() != b.fingerprint(), len(a.fingerprint())
        (True, 16)
        """
        if getattr(self, "_fingerprint", None) is None:
            digest = hashlib.sha1()
            digest.update(self.model.config.to_json_string().encode())
            digest.update(
                json.dumps([self.normalize_waveform, self.layer_groups,
                            self.input_sample_rate]).encode()
            )
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(
                    tensor.detach().cpu().contiguous().numpy().tobytes()
                )
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def train(self, mode=True):
        """Set this module's mode but keep the SSL model in eval mode.

        Example
        -------
        >>> import tempfile
        >>> ssl = FrozenSSLFeatures(
        ...     save_tiny_ssl_model("hubert", tempfile.mkdtemp()))
        >>> torch.nn.Sequential(ssl).train().training, ssl.model.training
        (True, False)
        """
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, wav):
        """Return the chosen hidden layers (or group sums) of ``wav``.

        Arguments
        ---------
        wav : torch.Tensor
            Waveforms ``[batch, time]`` (or ``[time]``) at
            ``input_sample_rate``.

        Returns
        -------
        list of torch.Tensor
            One ``[batch, frames, dim]`` tensor per layer or group. Gradients
            flow back to ``wav`` (not to the frozen weights).

        Example
        -------
        >>> import tempfile
        >>> ssl = FrozenSSLFeatures(
        ...     save_tiny_ssl_model("wav2vec2", tempfile.mkdtemp()),
        ...     layers=[0, 4], input_sample_rate=8000)
        >>> [tuple(f.shape) for f in ssl(torch.randn(1, 8000))]
        [(1, 49, 32), (1, 49, 32)]
        """
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise ValueError(
                f"FrozenSSLFeatures expects [batch, time], got {wav.shape}"
            )
        if self.input_sample_rate != SSL_SAMPLE_RATE:
            wav = torchaudio.functional.resample(
                wav, self.input_sample_rate, SSL_SAMPLE_RATE
            )
        if self.normalize_waveform:
            mean = wav.mean(dim=1, keepdim=True)
            var = wav.var(dim=1, keepdim=True, unbiased=False)
            wav = (wav - mean) / torch.sqrt(var + 1e-7)
        dtype = next(self.model.parameters()).dtype
        hidden = self.model(
            wav.to(dtype), output_hidden_states=True, return_dict=True
        ).hidden_states
        outputs = []
        for group in self.layer_groups:
            summed = hidden[group[0]]
            for index in group[1:]:
                summed = summed + hidden[index]
            outputs.append(summed)
        return outputs


def tiny_ssl_config(kind):
    """Return the config of a tiny randomly initialised SSL model.

    Hidden size 32, 4 transformer layers of 2 heads, feed-forward 64, and a
    7-layer convolutional front end with 16 channels and the real models'
    kernels and strides (320 samples per 20 ms frame at 16 kHz).

    Arguments
    ---------
    kind : str
        ``"wavlm"``, ``"hubert"`` or ``"wav2vec2"``.

    Example
    -------
    >>> tiny_ssl_config("wavlm").num_hidden_layers
    4
    """
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    classes = {
        "wavlm": WavLMConfig,
        "hubert": HubertConfig,
        "wav2vec2": Wav2Vec2Config,
    }
    if kind not in classes:
        raise ValueError(
            f"unknown tiny SSL model kind '{kind}'; use one of "
            f"{', '.join(classes)}"
        )
    return classes[kind](
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )


def save_random_model(config, folder, seed=0):
    """Save a model of ``config``, randomly initialised from ``seed``,
    with ``save_pretrained``; the caller's random state is kept.

    Example
    -------
    >>> import tempfile
    >>> folder = save_random_model(tiny_ssl_config("hubert"),
    ...                            tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors']
    """
    from transformers import AutoModel

    restore = _quiet_transformers()
    try:
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = AutoModel.from_config(config)
        finally:
            torch.random.set_rng_state(rng_state)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder)
    finally:
        restore()
    return folder


def save_tiny_ssl_model(kind, folder, seed=0):
    """Build a tiny WavLM, HuBERT or wav2vec 2.0 and ``save_pretrained`` it.

    The folder then loads with ``AutoModel.from_pretrained(folder)`` and
    with :class:`FrozenSSLFeatures` (``--ssl_source=<folder>``). Its weights
    are random: it stands in for the real checkpoints in tests and
    benchmarks, it carries no knowledge of speech. It also gets a
    ``preprocessor_config.json`` whose ``do_normalize`` follows the real
    model family (``True`` only for wav2vec 2.0).

    Arguments
    ---------
    kind : str
        ``"wavlm"``, ``"hubert"`` or ``"wav2vec2"``.
    folder : str
        Where to write ``config.json``, the weights and the preprocessor
        config (created if needed).
    seed : int
        Seed of the random initialisation.

    Returns
    -------
    str
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = save_tiny_ssl_model("wavlm", tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from transformers import Wav2Vec2FeatureExtractor

    save_random_model(tiny_ssl_config(kind), folder, seed)
    restore = _quiet_transformers()
    try:
        Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=SSL_SAMPLE_RATE,
            padding_value=0.0,
            do_normalize=kind == "wav2vec2",
            return_attention_mask=False,
        ).save_pretrained(folder)
    finally:
        restore()
    return folder
