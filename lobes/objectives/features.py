"""SSL features of a padded batch, each utterance on its own samples.

Authors
 * noise-robust-sb contributors 2025
"""

import torch


def utterance_features(ssl, signals, lengths):
    """SSL features of each utterance on its own samples.

    Utterances of equal length go through the model together; padding
    never enters it (a base model's convolutional front end normalises
    over the whole input). Gradients reach ``signals``.

    Arguments
    ---------
    ssl : callable
        ``[B, T]`` waveforms -> a list of ``[B, frames, dim]`` features.
    signals : torch.Tensor
        ``[B, T]`` padded waveforms.
    lengths : torch.Tensor
        Relative lengths ``[B]``.

    Returns
    -------
    features : list of torch.Tensor
        One ``[B, frames, dim]`` tensor per layer group, zero-padded.
    frames : torch.Tensor
        Valid frames of each utterance ``[B]``.

    Example
    -------
    >>> feats, frames = utterance_features(
    ...     lambda x: [x.unsqueeze(-1)], torch.ones(2, 4),
    ...     torch.tensor([1.0, 0.5]))
    >>> feats[0].shape, frames.tolist()
    (torch.Size([2, 4, 1]), [4, 2])
    """
    total = signals.shape[1]
    valid = torch.round(lengths.float() * total).long().clamp(1, total)
    groups = {}
    for index, length in enumerate(valid.tolist()):
        groups.setdefault(length, []).append(index)
    parts, order, frames = [], [], [0] * len(valid)
    for length, indices in groups.items():
        feats = ssl(signals[indices, :length])
        parts.append(feats)
        order.extend(indices)
        for index in indices:
            frames[index] = feats[0].shape[1]
    longest = max(frames)
    inverse = torch.argsort(torch.tensor(order, device=signals.device))
    features = []
    for layer in range(len(parts[0])):
        padded = torch.cat([
            torch.nn.functional.pad(
                part[layer], (0, 0, 0, longest - part[layer].shape[1])
            )
            for part in parts
        ])
        features.append(padded[inverse])
    return features, torch.tensor(frames, device=signals.device)
