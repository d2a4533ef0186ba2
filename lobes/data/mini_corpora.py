"""Mini corpora laid out exactly like WHAM!, LibriMix and VoiceBank-DEMAND.

Recipes run out of the box on these: speech is synthesized with eSpeak NG
(:mod:`lobes.data.tts`) from GRID-like sentences (so every utterance has a
transcript), noises come from :mod:`lobes.data.noises`, and the folders,
file names and level conventions follow the real corpora so that the same
preparation code (:mod:`lobes.data.prepare`) reads both.

Training, validation and test splits use disjoint speakers, disjoint babble
speakers and noises drawn from disjoint seeds. A corpus is deterministic for
a seed: generating it twice gives the same bytes.

Sizes: ``tiny`` (a few mixtures per split, seconds to generate; used by the
tests) and ``small`` (hundreds of mixtures; the demo's default).

The writers live in :mod:`lobes.data.mini` (``common``: sizes, speakers,
speech, PCM; ``wham``, ``librimix``, ``voicebank``: one per corpus; the
audio-visual corpus: :mod:`lobes.data.av_corpus`); this module holds the
entry points, :func:`generate`, the cache (:func:`ensure_mini_corpus`) and
the command line, and re-exports the names other modules read here.

Command line::

    python -m lobes.data.mini_corpora --corpus wham --out DIR [--seed N]
        [--size tiny|small] [--test_mixtures N]
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time

import torch

from lobes.data.av_corpus import generate_av
from lobes.data.mini.common import (  # noqa: F401 (_CORPUS_CODES: ssl.probe_data)
    _CORPUS_CODES,
    SIZES,
    SPEAKERS,
    SPLITS,
    _Speech,
)
from lobes.data.mini.librimix import _generate_librimix
from lobes.data.mini.voicebank import (
    VOICEBANK_TEST_SPEAKERS,
    VOICEBANK_VALID_SPEAKERS,
    _generate_voicebank,
)
from lobes.data.mini.wham import (
    WHAM_TRANSCRIPTS,
    _generate_wham,
    read_transcripts,
    wham_transcripts,
)
from lobes.errors import UserError, exit_on_user_error

__all__ = [
    "CORPORA",
    "GENERATOR_VERSION",
    "SIZES",
    "SPEAKERS",
    "SPLITS",
    "VOICEBANK_TEST_SPEAKERS",
    "VOICEBANK_VALID_SPEAKERS",
    "WHAM_TRANSCRIPTS",
    "default_cache_dir",
    "ensure_mini_corpus",
    "generate",
    "main",
    "read_transcripts",
    "wham_transcripts",
]

#: Corpora this module can generate (``av``: :mod:`lobes.data.av_corpus`).
CORPORA = ("wham", "librimix", "voicebank", "av")

#: Bumped whenever generation changes; cached corpora of another version
#: are regenerated.
GENERATOR_VERSION = 1


def _check_args(corpus, size, test_mixtures=None):
    if corpus not in CORPORA:
        raise UserError(
            f"unknown mini corpus {corpus!r}; choose one of "
            f"{', '.join(CORPORA)}"
        )
    if size not in ("tiny", "small"):
        raise UserError(
            f"unknown mini corpus size {size!r}; choose tiny or small"
        )
    if test_mixtures is not None and (
        corpus != "wham" or int(test_mixtures) < 1
    ):
        raise UserError(
            f"test_mixtures={test_mixtures!r}: only mini WHAM! takes a "
            "test split size, a positive integer"
        )


def generate(corpus, out_dir, seed=0, size="tiny", final_root=None,
             test_mixtures=None):
    """Generate a mini corpus into ``out_dir`` (its root folder).

    Arguments
    ---------
    corpus : str
        ``"wham"``, ``"librimix"``, ``"voicebank"`` or ``"av"``.
    out_dir : str
        Root of the corpus (``wav8k/`` for WHAM!, ``Libri2Mix/`` and
        ``Libri3Mix/`` for LibriMix, the six VoiceBank folders).
    seed : int
        Seed; the same seed gives the same files.
    size : str
        ``"tiny"`` or ``"small"``.
    final_root : str, optional
        Where the corpus will finally live, for the absolute paths written
        in LibriMix's metadata (default ``out_dir``).
    test_mixtures : int, optional
        Mini WHAM! only: test mixtures instead of the size's (a wider test
        set for benchmarks; training and validation mixtures unchanged,
        the size's test mixtures first).

    Returns
    -------
    str
        ``out_dir``.

    Example
    -------
    >>> import tempfile
    >>> root = generate("voicebank", tempfile.mkdtemp(), size="tiny")
    >>> sorted(os.listdir(os.path.join(root, "testset_txt")))[:2]
    ['p232_001.txt', 'p232_002.txt']
    """
    _check_args(corpus, size, test_mixtures)
    os.makedirs(out_dir, exist_ok=True)
    if corpus == "av":  # audio-visual: its own module and layout
        with _one_thread():
            return generate_av(out_dir, seed=seed, size=size)
    speech = _Speech()
    # Many short convolutions: one thread is several times faster than a
    # pool of threads competing for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if corpus == "wham":
            _generate_wham(out_dir, seed, size, speech, test_mixtures)
        elif corpus == "librimix":
            _generate_librimix(out_dir, seed, size, speech, final_root)
        else:
            _generate_voicebank(out_dir, seed, size, speech)
    finally:
        torch.set_num_threads(threads)
    return out_dir


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def default_cache_dir():
    """The cache folder: ``$NRSB_CACHE`` or ``~/.cache/noise_robust_sb``.

    Example
    -------
    >>> os.path.basename(default_cache_dir()) != ""
    True
    """
    return os.environ.get("NRSB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "noise_robust_sb"
    )


def _is_complete(marker):
    """Whether a finished corpus of the current generator version is there."""
    try:
        with open(marker, encoding="utf-8") as fin:
            return json.load(fin).get("version") == GENERATOR_VERSION
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(lock_path):
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_mini_corpus(corpus, size="small", seed=0, cache_dir=None,
                       test_mixtures=None):
    """Return the folder of a cached mini corpus, generating it if needed.

    The corpus lives in ``<cache>/<corpus>_<size>_seed<seed>`` (with
    ``_test<test_mixtures>`` when given). It is
    generated into a temporary sibling folder and renamed into place with a
    ``.complete`` marker, under a file lock: an interrupted generation is
    redone and concurrent callers wait for one another.

    Arguments
    ---------
    corpus : str
        ``"wham"``, ``"librimix"`` or ``"voicebank"``.
    size : str
        ``"tiny"`` or ``"small"``.
    seed : int
        Corpus seed.
    cache_dir : str, optional
        Cache folder (default :func:`default_cache_dir`).
    test_mixtures : int, optional
        Mini WHAM! only: the test split's size (see :func:`generate`).

    Returns
    -------
    str
        The corpus root folder.

    Example
    -------
    >>> import tempfile
    >>> cache = tempfile.mkdtemp()
    >>> root = ensure_mini_corpus("voicebank", "tiny", cache_dir=cache)
    >>> os.path.basename(root)
    'voicebank_tiny_seed0'
    >>> ensure_mini_corpus("voicebank", "tiny", cache_dir=cache) == root
    True
    """
    _check_args(corpus, size, test_mixtures)
    cache = os.path.abspath(
        os.path.expanduser(cache_dir or default_cache_dir())
    )
    name = f"{corpus}_{size}_seed{int(seed)}"
    if test_mixtures is not None:
        name += f"_test{int(test_mixtures)}"
    final = os.path.join(cache, name)
    marker = os.path.join(final, ".complete")
    if _is_complete(marker):
        return final
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"{cache}: cannot create the mini corpus cache ({err}); set "
            "NRSB_CACHE to a writable folder"
        ) from None
    with _locked(os.path.join(cache, f".{name}.lock")):
        if _is_complete(marker):
            return final
        # leftovers of an interrupted generation
        for entry in os.listdir(cache):
            if entry.startswith(f".{name}.tmp"):
                shutil.rmtree(os.path.join(cache, entry), ignore_errors=True)
        if os.path.isdir(final):
            shutil.rmtree(final)
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp", dir=cache)
        try:
            start = time.time()
            print(
                f"Generating the {size} mini {corpus} corpus in {final} ...",
                file=sys.stderr,
                flush=True,
            )
            generate(corpus, tmp, seed=seed, size=size, final_root=final,
                     test_mixtures=test_mixtures)
            with open(os.path.join(tmp, ".complete"), "w") as fout:
                json.dump(
                    {
                        "version": GENERATOR_VERSION,
                        "seconds": round(time.time() - start, 1),
                    },
                    fout,
                )
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


@exit_on_user_error
def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Generate a synthetic mini corpus in a real layout."
    )
    parser.add_argument("--corpus", choices=CORPORA, required=True)
    parser.add_argument("--out", required=True, help="corpus root folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--test_mixtures", type=int, default=None,
                        help="mini WHAM! only: the test split's size")
    args = parser.parse_args(argv)
    start = time.time()
    generate(args.corpus, args.out, seed=args.seed, size=args.size,
             test_mixtures=args.test_mixtures)
    print(
        f"{args.corpus} ({args.size}, seed {args.seed}) written to "
        f"{args.out} in {time.time() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
