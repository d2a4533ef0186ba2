"""Model sizes and training settings that run on a laptop CPU.

The recipe YAMLs default to the papers' model sizes, made for a GPU (the
paper-size SepFormer takes about 15 s a step on a 2-core CPU). These
command-line overrides shrink them to what trains in minutes on one CPU
thread; the demo (:mod:`lobes.demo`), the benchmarks under ``benchmarks/``
and the README's "Running on a CPU" use them, so that their numbers are of
the same models.

They were chosen in pilot runs on the small mini corpora (2-core VM):
the SepFormer learned faster at lr 1e-3 than at 3e-3 (2.1 against 1.6 dB
SI-SNRi after 400 steps), and 1 s segments learned about as much per step
as 2 s ones at half the cost (DPRNN after 400 steps: 3.0 against 3.1 dB).

Example
-------
>>> sorted(SEPARATION)
['dprnn', 'sepformer']
>>> command_line({"lr": 0.001, "sizes": [1, 2]})
['--lr=0.001', '--sizes=[1, 2]']
"""

#: Separation backbones (WHAM! and LibriMix recipes), with learning rates.
SEPARATION = {
    "sepformer": {
        "encoder_channels": 64, "encoder_kernel_size": 32,
        "num_dual_path_blocks": 1, "num_transformer_layers": 2,
        "num_heads": 4, "d_ffn": 128, "chunk_size": 50, "lr": 0.001,
    },
    "dprnn": {
        "encoder_channels": 64, "encoder_kernel_size": 16,
        "num_dual_path_blocks": 2, "chunk_size": 50, "lr": 0.003,
    },
}

#: NASS's PatchNCE at the CPU size (the paper: 256 patches, 256 dims).
PATCH_NCE = {"nce_num_patches": 64, "nce_embed_dim": 64}

#: Separation training: 100 steps an epoch on the small mini WHAM! corpus.
SEPARATION_TRAINING = {
    "number_of_epochs": 20, "batch_size": 4, "segment_seconds": 1.0,
    "speed_perturb": False,
}

#: Enhancement backbones (VoiceBank recipes), with the recipes' rates.
ENHANCEMENT = {
    "convtasnet": {
        "encoder_channels": 64, "bottleneck_channels": 64,
        "conv_channels": 128, "blocks_per_repeat": 4, "num_repeats": 2,
        "lr": 0.001,
    },
    "spectral_mask": {
        "cnn_channels": 64, "d_model": 64, "nhead": 4, "num_layers": 2,
        "d_ffn": 128, "lr": 0.0005,
    },
    "cmcr_net": {
        "encoder_channels": [8, 16, 32, 32, 32], "rnn_hidden_size": 64,
        "rnn_layers": 1, "fusion_hidden_channels": 64, "lr": 0.001,
    },
}

#: Enhancement training: 52 steps an epoch on the small mini VoiceBank.
ENHANCEMENT_TRAINING = {
    "number_of_epochs": 20, "batch_size": 8, "segment_length": 2.0,
}


def command_line(overrides):
    """``--key=value`` flags of a recipe for a dict of overrides."""
    return [f"--{key}={value}" for key, value in overrides.items()]
