"""Speech synthesis with eSpeak NG for the mini corpora.

The ``espeakng_loader`` wheel ships ``libespeak-ng.so`` and its data folder,
so no system package is needed; the library is driven through ``ctypes``.

A :class:`~lobes.data.voices.Speaker` (:mod:`lobes.data.voices`) is an
English accent, a voice variant (which carries the formant settings), its
own formant-frequency scaling, pitch, pitch range and speaking rate. Each
speaker gets its own eSpeak variant file, written into a private copy of
the data folder, so two speakers built from the same variant still differ.

eSpeak keeps state between utterances in static variables (pitch flutter
phase, spectral interpolation buffers), which would make an utterance depend
on what was synthesized before it. :func:`synthesize` therefore loads a
private copy of the library afresh for every utterance (about 5 ms): the
same text and speaker always give the same samples.

:func:`synthesize_with_phonemes` also returns eSpeak's timed phonemes (the
library initialised with phoneme events on), which drive the synthetic lips
of the audio-visual mini corpus (:mod:`lobes.data.lips`); the waveform is
the one :func:`synthesize` returns.
"""

import _ctypes
import atexit
import ctypes
import ctypes.util
import math
import os
import shutil
import tempfile
import threading

import numpy as np
import torch
import torchaudio

from lobes.data.voices import Speaker
from lobes.errors import UserError

#: Sample rate eSpeak NG synthesizes at.
NATIVE_RATE = 22050

# espeak_AUDIO_OUTPUT and espeak_PARAMETER values (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_POS_CHARACTER = 1
# eSpeak's volume (0..200, default 100); lower keeps loud variants unclipped.
_VOLUME = 55
_RANDOM_SEED = 12345
_ESPEAK_CHARS_UTF8 = 1

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
# espeak_Initialize option and event types (speak_lib.h)
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7


class _Event(ctypes.Structure):
    """``espeak_EVENT``; ``id`` is a union whose phoneme member is char[8]."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]



class _Espeak:
    """A private copy of the library and data folder, reloaded per call."""

    def __init__(self):
        try:
            import espeakng_loader

            lib_path = espeakng_loader.get_library_path()
            data_path = espeakng_loader.get_data_path()
        except Exception as err:  # missing wheel or data
            raise UserError(
                f"eSpeak NG is not available ({type(err).__name__}: {err}); "
                "install it with `pip install espeakng-loader`"
            ) from None
        self.workdir = tempfile.mkdtemp(prefix="nrsb_espeak_")
        atexit.register(shutil.rmtree, self.workdir, True)
        self.lib_path = os.path.join(self.workdir, "libespeak-ng.so")
        self.data_path = os.path.join(self.workdir, "data")
        self.variant_dir = os.path.join(self.data_path, "voices", "!v")
        self.source_variants = os.path.join(data_path, "voices", "!v")
        try:
            shutil.copyfile(lib_path, self.lib_path)
            os.makedirs(self.variant_dir)
            for entry in os.listdir(data_path):
                if entry != "voices":
                    os.symlink(
                        os.path.join(data_path, entry),
                        os.path.join(self.data_path, entry),
                    )
        except OSError as err:
            raise UserError(
                f"{lib_path}: cannot prepare eSpeak NG ({err}); reinstall "
                "espeakng-loader"
            ) from None
        self.lock = threading.Lock()
        self.samples = []
        self.events = None
        self.callback = _CALLBACK(self._collect)
        self.written = set()
        try:
            libc_name = ctypes.util.find_library("c") or "libc.so.6"
            self.libc = ctypes.CDLL(libc_name)
        except OSError:
            self.libc = None
        # Check once that the library loads and speaks.
        probe = Speaker("probe", "en", "m1", 50, 50, 170, (1.0,) * 9)
        if self.speak("test", probe).size == 0:
            raise UserError(
                f"{lib_path}: eSpeak NG produced no audio; reinstall "
                "espeakng-loader"
            )

    def _collect(self, wav, num_samples, events):
        if num_samples > 0:
            self.samples.append(
                np.ctypeslib.as_array(wav, shape=(num_samples,)).copy()
            )
        if self.events is not None and events:
            array = ctypes.cast(events, ctypes.POINTER(_Event))
            index = 0
            while array[index].type != _EVENT_LIST_TERMINATED:
                event = array[index]
                if event.type == _EVENT_PHONEME:
                    name = event.id.decode("utf-8", errors="replace")
                    self.events.append((name, int(event.sample)))
                index += 1
        return 0

    def _write_variant(self, speaker):
        if speaker.variant_file in self.written:
            return
        source = os.path.join(self.source_variants, speaker.variant)
        try:
            with open(source, encoding="utf-8", errors="replace") as fin:
                lines = fin.read().splitlines()
        except OSError:
            raise UserError(
                f"{source}: eSpeak NG voice variant not found; choose one "
                "of lobes.data.voices.VARIANTS"
            ) from None
        formants = {}
        kept = []
        for line in lines:
            fields = line.split()
            if fields[:1] == ["formant"] and len(fields) >= 5:
                formants[int(fields[1])] = [int(f) for f in fields[2:]]
            elif fields[:1] != ["name"]:
                kept.append(line)
        kept.append(f"name {speaker.variant_file}")
        for index, factor in enumerate(speaker.formant_scale):
            values = formants.get(index, [100, 100, 100])
            freq = max(20, int(round(values[0] * factor)))
            rest = " ".join(str(v) for v in values[1:])
            kept.append(f"formant {index} {freq} {rest}")
        path = os.path.join(self.variant_dir, speaker.variant_file)
        with open(path, "w", encoding="utf-8") as fout:
            fout.write("\n".join(kept) + "\n")
        self.written.add(speaker.variant_file)

    def speak(self, text, speaker, phonemes=False):
        """Return int16 samples at :data:`NATIVE_RATE`.

        With ``phonemes=True``, return ``(samples, events)`` where
        ``events`` lists ``(phoneme mnemonic, start sample)`` in order.
        """
        with self.lock:
            self.events = [] if phonemes else None
            self._write_variant(speaker)
            try:
                lib = ctypes.CDLL(self.lib_path)
            except OSError as err:
                raise UserError(
                    f"{self.lib_path}: cannot load eSpeak NG ({err}); "
                    "reinstall espeakng-loader"
                ) from None
            try:
                rate = lib.espeak_Initialize(
                    _AUDIO_OUTPUT_SYNCHRONOUS,
                    0,
                    self.data_path.encode(),
                    _INITIALIZE_PHONEME_EVENTS if phonemes else 0,
                )
                if rate != NATIVE_RATE:
                    raise UserError(
                        f"{self.data_path}: eSpeak NG failed to initialize "
                        f"(returned {rate}); reinstall espeakng-loader"
                    )
                lib.espeak_SetSynthCallback(self.callback)
                status = lib.espeak_SetVoiceByName(speaker.voice_name.encode())
                if status != 0:
                    raise UserError(
                        f"eSpeak NG voice {speaker.voice_name!r} not found; "
                        "choose an accent of lobes.data.voices.ACCENTS"
                    )
                lib.espeak_SetParameter(_ESPEAK_RATE, speaker.rate, 0)
                lib.espeak_SetParameter(_ESPEAK_VOLUME, _VOLUME, 0)
                lib.espeak_SetParameter(_ESPEAK_PITCH, speaker.pitch, 0)
                lib.espeak_SetParameter(_ESPEAK_RANGE, speaker.pitch_range, 0)
                self.samples = []
                # Klatt voices and breath noise draw random numbers.
                lib.espeak_ng_SetRandSeed(ctypes.c_long(_RANDOM_SEED))
                if self.libc is not None:
                    self.libc.srand(_RANDOM_SEED)
                data = text.encode("utf-8")
                lib.espeak_Synth(
                    data,
                    ctypes.c_size_t(len(data) + 1),
                    0,
                    _POS_CHARACTER,
                    0,
                    _ESPEAK_CHARS_UTF8,
                    None,
                    None,
                )
                lib.espeak_Synchronize()
                lib.espeak_Terminate()
            finally:
                _ctypes.dlclose(lib._handle)
            samples = (
                np.concatenate(self.samples)
                if self.samples
                else np.zeros(0, dtype=np.int16)
            )
            events, self.events = self.events, None
            return (samples, events) if phonemes else samples


_ENGINE = None
_ENGINE_LOCK = threading.Lock()


def _engine():
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def check_espeak():
    """Load eSpeak NG once, raising a one-line UserError if it cannot.

    Example
    -------
    >>> check_espeak()
    """
    _engine()


def trim_silence(audio, sample_rate, threshold=0.01, margin=0.02):
    """Cut leading and trailing near-silence, keeping a short margin.

    Arguments
    ---------
    audio : numpy.ndarray
        Shape ``[time]``.
    sample_rate : int
        Its rate.
    threshold : float
        Fraction of the peak below which a 10 ms frame counts as silent.
    margin : float
        Seconds of context kept on each side.

    Example
    -------
    >>> x = np.concatenate([np.zeros(800), np.ones(160), np.zeros(800)])
    >>> len(trim_silence(x, 8000))
    480
    """
    start, stop = _trim_bounds(audio, sample_rate, threshold, margin)
    return audio[start:stop]


def _trim_bounds(audio, sample_rate, threshold=0.01, margin=0.02):
    """``(start, stop)`` samples kept by :func:`trim_silence`."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return 0, audio.size
    frame = max(1, sample_rate // 100)
    num_frames = math.ceil(audio.size / frame)
    padded = np.zeros(num_frames * frame, dtype=audio.dtype)
    padded[: audio.size] = audio
    frame_peaks = np.abs(padded.reshape(num_frames, frame)).max(axis=1)
    loud = np.nonzero(frame_peaks > threshold * peak)[0]
    keep = int(margin * sample_rate)
    start = max(0, int(loud[0]) * frame - keep)
    stop = min(audio.size, (int(loud[-1]) + 1) * frame + keep)
    return start, stop


def synthesize(text, speaker, sample_rate=16000, trim=True):
    """Speak ``text`` with ``speaker``; return a float32 tensor.

    Arguments
    ---------
    text : str
        What to say.
    speaker : Speaker
        Who says it.
    sample_rate : int
        Output rate (eSpeak's 22050 Hz output is resampled).
    trim : bool
        Whether to cut leading and trailing silence.

    Returns
    -------
    torch.Tensor
        Shape ``[time]``, values in [-1, 1].

    Example
    -------
    >>> from lobes.data.voices import make_speaker_pool
    >>> spk = make_speaker_pool(1)[0]
    >>> wav = synthesize("bin blue at f two now", spk, 8000)
    >>> 0.5 < wav.shape[0] / 8000 < 3.0
    True
    >>> torch.equal(wav, synthesize("bin blue at f two now", spk, 8000))
    True
    """
    wav, _, _ = _to_waveform(_engine().speak(text, speaker), sample_rate,
                             trim)
    return wav


def _to_waveform(samples, sample_rate, trim):
    """eSpeak's int16 samples -> ``(wav, start, stop)``: the float waveform
    at ``sample_rate`` in [-1, 1] and the native samples kept by the trim.
    """
    samples = samples.astype(np.float32) / 32768.0
    start, stop = 0, samples.size
    if trim:
        start, stop = _trim_bounds(samples, NATIVE_RATE)
        samples = samples[start:stop]
    wav = torch.from_numpy(np.ascontiguousarray(samples))
    if wav.numel() > 0:
        wav = resample(wav, NATIVE_RATE, sample_rate)
    return wav.clamp(-1.0, 1.0), start, stop


def synthesize_with_phonemes(text, speaker, sample_rate=16000, trim=True):
    """Like :func:`synthesize`, also returning the timed phonemes.

    eSpeak NG is initialised with phoneme events on; each phoneme event
    gives the phoneme's mnemonic (eSpeak's phoneme names, e.g. ``b``,
    ``I``, ``aI``, ``_:`` for a pause) and the sample where it starts. The
    waveform is the same as :func:`synthesize` returns (the events only
    report what the synthesizer does).

    Arguments
    ---------
    text : str
        What to say.
    speaker : Speaker
        Who says it.
    sample_rate : int
        Output rate.
    trim : bool
        Whether to cut leading and trailing silence (the times follow).

    Returns
    -------
    wav : torch.Tensor
        Shape ``[time]``, as :func:`synthesize`.
    phonemes : list of tuple
        ``(mnemonic, start_seconds, end_seconds)`` in the time base of
        ``wav``, in order, each ending where the next starts (the last at
        the end of the audio); phonemes wholly trimmed away are dropped.

    Example
    -------
    >>> from lobes.data.voices import make_speaker_pool
    >>> spk = make_speaker_pool(1)[0]
    >>> wav, phones = synthesize_with_phonemes("bin blue", spk, 16000)
    >>> torch.equal(wav, synthesize("bin blue", spk, 16000))
    True
    >>> [p[0] for p in phones if p[0] in ("b", "l")]
    ['b', 'b', 'l']
    >>> all(a[2] == b[1] for a, b in zip(phones, phones[1:]))
    True
    """
    samples, events = _engine().speak(text, speaker, phonemes=True)
    wav, start, stop = _to_waveform(samples, sample_rate, trim)
    duration = wav.numel() / sample_rate
    phonemes = []
    bounds = [sample for _, sample in events[1:]] + [stop]
    for (name, begin), end in zip(events, bounds):
        begin = min(max(begin - start, 0), stop - start) / NATIVE_RATE
        end = min(max(end - start, 0), stop - start) / NATIVE_RATE
        begin, end = min(begin, duration), min(end, duration)
        if end > begin:
            phonemes.append((name, begin, end))
    return wav, phonemes


_RESAMPLERS = {}


def resample(wav, orig_rate, new_rate):
    """Resample a ``[time]`` tensor, reusing the filter of each rate pair.

    Example
    -------
    >>> resample(torch.zeros(16000), 16000, 8000).shape
    torch.Size([8000])
    """
    if orig_rate == new_rate:
        return wav
    key = (int(orig_rate), int(new_rate))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(*key)
    with torch.no_grad():
        return _RESAMPLERS[key](wav.float())
