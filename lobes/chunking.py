"""Long recordings in overlapping chunks, stitched (overlap-add).

:func:`overlap_add` runs a model over overlapping chunks of a recording
so that memory stays bounded whatever its length. Each chunk's outputs are
put in the order of the previous chunk's by matching the overlapping parts
(cosine similarity over all output permutations), then cross-faded.
Neither SpeechBrain nor torch has an overlap-add that re-aligns permuted
outputs, so it lives here, once.

Authors
 * noise-robust-sb contributors 2025
"""

import itertools

import torch

from lobes.errors import UserError

#: Length of the chunks long recordings are cut into (seconds).
DEFAULT_CHUNK_SECONDS = 8.0


#: Overlap of consecutive chunks (seconds): aligns outputs, cross-fades.
DEFAULT_OVERLAP_SECONDS = 1.0


def chunk_starts(length, chunk, hop):
    """Start samples of chunks of ``chunk`` samples covering ``length``.

    Example
    -------
    >>> chunk_starts(25, 10, 8)
    [0, 8, 15]
    >>> chunk_starts(7, 10, 8)
    [0]
    """
    if length <= chunk:
        return [0]
    starts = list(range(0, length - chunk + 1, hop))
    if starts[-1] + chunk < length:
        starts.append(length - chunk)
    return starts


def _match_order(previous, current):
    """Permutation of ``current``'s outputs that best matches ``previous``.

    Arguments
    ---------
    previous, current : torch.Tensor
        ``[T, S]`` estimates over the same stretch of audio.

    Returns
    -------
    list of int
        ``order`` such that ``current[:, order]`` lines up with
        ``previous``.

    Example
    -------
    >>> a = torch.randn(100, 3)
    >>> _match_order(a, a[:, [2, 0, 1]] * 0.5)
    [1, 2, 0]
    """
    prev = previous - previous.mean(dim=0)
    cur = current - current.mean(dim=0)
    prev = prev / (prev.norm(dim=0, keepdim=True) + 1e-8)
    cur = cur / (cur.norm(dim=0, keepdim=True) + 1e-8)
    similarity = prev.t() @ cur  # [S_prev, S_cur]
    sources = similarity.shape[0]
    best, best_score = None, None
    for order in itertools.permutations(range(sources)):
        score = float(similarity[range(sources), list(order)].sum())
        if best_score is None or score > best_score:
            best, best_score = list(order), score
    return best


def overlap_add(process, signal, chunk, overlap):
    """Run ``process`` over overlapping chunks of ``signal`` and stitch.

    Arguments
    ---------
    process : callable
        Maps a chunk ``[L]`` to its outputs ``[L, S]``.
    signal : torch.Tensor
        The whole recording ``[T]``.
    chunk : int
        Chunk length in samples; a signal no longer than this is processed
        in one call.
    overlap : int
        Samples shared by consecutive chunks, ``0 <= overlap < chunk``.

    Returns
    -------
    torch.Tensor
        ``[T, S]``, in the output order of the first chunk.

    Example
    -------
    >>> signal = torch.randn(1000)
    >>> double = lambda x: torch.stack([x, 2 * x], dim=1)
    >>> out = overlap_add(double, signal, chunk=300, overlap=100)
    >>> torch.allclose(out, double(signal), atol=1e-6)
    True
    """
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap {overlap} not in [0, chunk {chunk})")
    length = signal.shape[0]
    if length <= chunk:
        return process(signal)
    starts = chunk_starts(length, chunk, chunk - overlap)
    total, weight, previous = None, torch.zeros(length), None
    for k, start in enumerate(starts):
        end = min(start + chunk, length)
        outputs = process(signal[start:end])
        if total is None:
            total = torch.zeros(length, outputs.shape[1])
        fade_in = 0
        if previous is not None:
            p_start, p_end, p_out = previous
            fade_in = max(p_end - start, 0)
            if fade_in > 0:
                order = _match_order(p_out[start - p_start:],
                                     outputs[:fade_in])
                outputs = outputs[:, order]
        fade_out = 0
        if k + 1 < len(starts):
            fade_out = max(end - starts[k + 1], 0)
        window = torch.ones(end - start)
        if fade_in:
            window[:fade_in] = torch.linspace(0, 1, fade_in + 2)[1:-1]
        if fade_out:
            window[-fade_out:] = torch.linspace(1, 0, fade_out + 2)[1:-1]
        total[start:end] += outputs * window.unsqueeze(1)
        weight[start:end] += window
        previous = (start, end, outputs)
    return total / weight.clamp(min=1e-8).unsqueeze(1)


def check_chunking(chunk_seconds, overlap_seconds):
    """Stop in one line unless ``0 <= overlap_seconds < chunk_seconds``.

    Example
    -------
    >>> check_chunking(8.0, 1.0)
    >>> check_chunking(1.0, 2.0)
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: overlap (2.0 s) must be shorter than the chunk \
(1.0 s): fix --overlap_seconds
    """
    if not 0 <= overlap_seconds < chunk_seconds:
        raise UserError(
            f"overlap ({overlap_seconds} s) must be shorter than the chunk "
            f"({chunk_seconds} s): fix --overlap_seconds"
        )


def minimum_length(process, limit=1 << 16):
    """The fewest samples a model takes, found by running it on silence.

    Convolutions, STFTs and dual-path chunking each need some least number
    of samples (a kernel, a window); rather than knowing every backbone's
    rule, this asks the model: it doubles the length of a silent input
    until ``process`` accepts it, then bisects. The lengths that fail are
    assumed to be those below the minimum.

    Arguments
    ---------
    process : callable
        Maps an input ``[L]`` to outputs; raises ``RuntimeError`` (or
        ``ValueError``, ``IndexError``) on an input too short.
    limit : int
        The longest input tried.

    Returns
    -------
    int or None
        The minimum, or ``None`` when even ``limit`` samples fail (the
        failure is then not about length).

    Example
    -------
    >>> conv = torch.nn.Conv1d(1, 1, kernel_size=161)
    >>> minimum_length(lambda x: conv(x[None, None]))
    161
    >>> minimum_length(lambda x: x)
    1
    """

    def accepts(length):
        try:
            with torch.no_grad():
                process(torch.zeros(length))
        except (RuntimeError, ValueError, IndexError):
            return False
        return True

    if accepts(1):
        return 1
    low, high = 1, 2  # low fails
    while not accepts(high):
        if high >= limit:
            return None
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        middle = (low + high) // 2
        if accepts(middle):
            high = middle
        else:
            low = middle
    return high


def pad_to_minimum(signal, minimum):
    """``signal`` ``[T]`` padded with silence to ``minimum`` samples.

    Example
    -------
    >>> pad_to_minimum(torch.ones(3), 5)
    tensor([1., 1., 1., 0., 0.])
    >>> pad_to_minimum(torch.ones(3), 2)
    tensor([1., 1., 1.])
    """
    missing = int(minimum) - signal.shape[0]
    if missing <= 0:
        return signal
    return torch.nn.functional.pad(signal, (0, missing))
