"""The mini WHAM! writer, and the transcripts of its source utterances.

Authors
 * noise-robust-sb contributors 2025
"""

import json
import os

from lobes.data.grid_grammar import grid_text
from lobes.data.mini.common import (
    SIZES,
    SPEAKERS,
    SPLITS,
    _fit,
    _noise_pools,
    _num_sentences,
    _path_maker,
    _rms,
    _speaker_groups,
    _split_rng,
    _write_info,
    _write_mixture_set,
)
from lobes.errors import UserError

WHAM_SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}


def _wsj_speaker_code(index):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"{index // 26:02d}{letters[index % 26]}"


#: The file of a mini WHAM! corpus (at its root) with the transcript of
#: every source utterance: one ``<utterance id> <WORDS>`` line each, upper
#: case, as in a Kaldi ``text`` file. The ids are those in the mixture
#: names (``<s1 id>_<gain>_<s2 id>_<gain>``), as WSJ0's are for WHAM!.
WHAM_TRANSCRIPTS = "transcripts.txt"


def _wham_plan(seed, size, test_mixtures=None):
    """The random draws of mini WHAM!, split by split, in generation order.

    Only each split's own generator is drawn from (speech and noise
    synthesis draw from others), so the plan alone gives the names and
    transcripts of a corpus: :func:`wham_transcripts` replays it for
    corpora generated before their transcripts were written.

    Returns
    -------
    dict
        Split -> list of mixtures, each a dict with ``name``,
        ``utterances`` (the two source utterance ids), ``picks`` (indices
        into the split's speakers), ``texts`` (lower-case GRID texts),
        ``level`` and ``snr`` (dB).

    Arguments
    ---------
    seed : int
        Corpus seed.
    size : str
        ``"tiny"`` or ``"small"``.
    test_mixtures : int, optional
        Test mixtures instead of the size's. Each split draws from its own
        generator, so the training and validation mixtures stay the same
        and the size's test mixtures are the first ones.

    Example
    -------
    >>> plan = _wham_plan(0, "tiny")
    >>> len(plan["test"]), len(plan["test"][0]["texts"])
    (4, 2)
    >>> wide = _wham_plan(0, "tiny", test_mixtures=9)
    >>> len(wide["test"]), wide["test"][:4] == plan["test"]
    (9, True)
    >>> wide["train"] == plan["train"]
    True
    """
    config = dict(SIZES["wham"][size])
    if test_mixtures is not None:
        config["test"] = int(test_mixtures)
    code_offset = 0
    plan = {}
    for split in SPLITS:
        num_speakers = SPEAKERS[size][split]
        codes = [_wsj_speaker_code(code_offset + i)
                 for i in range(num_speakers)]
        code_offset += num_speakers
        utt_counts = [0] * num_speakers
        rng = _split_rng(seed, "wham", split)
        plan[split] = []
        for _ in range(config[split]):
            picks = rng.choice(num_speakers, 2, replace=False)
            utts, texts = [], []
            for pick in picks:
                utt_counts[pick] += 1
                utts.append(f"{codes[pick]}c{100 + utt_counts[pick]:04d}")
                texts.append(
                    grid_text(rng, _num_sentences(rng, config["sentences"]))
                )
            level = float(rng.uniform(0.0, 5.0)) / 2.0
            snr = float(rng.uniform(-6.0, 3.0))
            plan[split].append({
                "name": f"{utts[0]}_{level:.4f}_{utts[1]}_{-level:.4f}",
                "utterances": utts, "picks": [int(p) for p in picks],
                "texts": texts, "level": level, "snr": snr,
            })
    return plan


def _write_wham_transcripts(path, plan):
    """Write every source utterance's transcript (:data:`WHAM_TRANSCRIPTS`)."""
    lines = sorted(
        f"{utt} {text.upper()}\n"
        for mixtures in plan.values()
        for mixture in mixtures
        for utt, text in zip(mixture["utterances"], mixture["texts"])
    )
    with open(path, "w", encoding="utf-8") as fout:
        fout.writelines(lines)


def read_transcripts(path):
    """Read a ``<utterance id> <words>`` file (:data:`WHAM_TRANSCRIPTS`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "text")
    >>> _ = open(path, "w").write("01ac0101 BIN BLUE AT F TWO NOW\\n\\n")
    >>> read_transcripts(path)
    {'01ac0101': 'BIN BLUE AT F TWO NOW'}
    """
    transcripts = {}
    with open(path, encoding="utf-8") as fin:
        for number, line in enumerate(fin, 1):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            if len(parts) < 2:
                raise UserError(
                    f"{path}:{number}: expected '<utterance id> <words>', got "
                    f"{line.strip()!r}"
                )
            transcripts[parts[0]] = " ".join(parts[1].split())
    return transcripts


def wham_transcripts(root):
    """Utterance id -> transcript of every source of a mini WHAM! corpus.

    Read from :data:`WHAM_TRANSCRIPTS`; a corpus generated before that
    file was written gets the same transcripts by replaying its random
    draws (:func:`_wham_plan`, from ``mini_corpus.json``'s seed and size),
    checked against its mixture files.

    Raises
    ------
    UserError
        One line, when ``root`` is not a mini WHAM! corpus.

    Example
    -------
    >>> wham_transcripts("/no/such/corpus")
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: /no/such/corpus: no transcripts.txt and no ...
    """
    path = os.path.join(root, WHAM_TRANSCRIPTS)
    if os.path.isfile(path):
        return read_transcripts(path)
    info = {}
    try:
        with open(os.path.join(root, "mini_corpus.json"),
                  encoding="utf-8") as fin:
            info = json.load(fin)
    except (OSError, ValueError):
        pass
    if info.get("corpus") != "wham" or info.get("size") not in SPEAKERS:
        raise UserError(
            f"{root}: no {WHAM_TRANSCRIPTS} and no mini WHAM! corpus "
            "information (mini_corpus.json); pass a transcripts file "
            "('<utterance id> <words>' lines, e.g. from WSJ0's .dot files)"
        )
    plan = _wham_plan(int(info["seed"]), info["size"],
                      info.get("test_mixtures"))
    for split, mixtures in plan.items():
        folder = os.path.join(root, "wav8k", "min", WHAM_SPLITS[split],
                              "mix_both")
        missing = [m["name"] for m in mixtures if not os.path.isfile(
            os.path.join(folder, f"{m['name']}.wav"))]
        if missing:
            raise UserError(
                f"{folder}/{missing[0]}.wav: missing; {root} was not made by "
                "this generator, pass its transcripts file instead"
            )
    return {
        utt: text.upper()
        for mixtures in plan.values()
        for mixture in mixtures
        for utt, text in zip(mixture["utterances"], mixture["texts"])
    }


def _generate_wham(out_dir, seed, size, speech, test_mixtures=None):
    speakers = _speaker_groups(seed, size, "wham")
    pools = _noise_pools(seed, "wham", speakers, speech)
    plan = _wham_plan(seed, size, test_mixtures)
    folders = ("mix_both", "mix_clean", "mix_single", "s1", "s2", "noise")
    for split in SPLITS:
        split_speakers = speakers[split]
        for rate in ("wav8k", "wav16k"):
            for mode in ("min", "max"):
                for folder in folders:
                    os.makedirs(
                        os.path.join(
                            out_dir, rate, mode, WHAM_SPLITS[split], folder
                        ),
                        exist_ok=True,
                    )
        names = set()
        for index, mixture in enumerate(plan[split]):
            name, level, snr = (mixture["name"], mixture["level"],
                                mixture["snr"])
            waves = [
                speech(text, split_speakers[pick])
                for text, pick in zip(mixture["texts"], mixture["picks"])
            ]
            if name in names:
                raise RuntimeError(f"duplicate mixture name {name}")
            names.add(name)
            s1 = waves[0] * 10 ** (level / 20)
            s2 = waves[1] * 10 ** (-level / 20)
            longest = max(s1.size, s2.size)
            shortest = min(s1.size, s2.size)
            noise, _ = pools[split].draw(longest, index)
            noise = noise * (_rms(s1) / 10 ** (snr / 20))
            sources = {
                "s1": _fit(s1, longest),
                "s2": _fit(s2, longest),
                "noise": noise,
            }
            _write_mixture_set(
                sources,
                shortest,
                _path_maker(out_dir, WHAM_SPLITS[split], name),
                speech_names=("s1", "s2"),
            )
    _write_wham_transcripts(os.path.join(out_dir, WHAM_TRANSCRIPTS), plan)
    extra = {} if test_mixtures is None else {"test_mixtures": test_mixtures}
    _write_info(out_dir, "wham", seed, size, **extra)
