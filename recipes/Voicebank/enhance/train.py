#!/usr/bin/env python3
"""Train and test a speech enhancer on VoiceBank-DEMAND (16 kHz).

The YAML picks the backbone and the objective: the plain waveform loss
(baseline), contrastive regularization with the noisy input as negative
(CR), or curricular CR whose negatives also include the output of the
baseline trained first (CCR):

    python train.py hparams/convtasnet.yaml                  # mini corpus
    python train.py hparams/cr_wavlm_convtasnet.yaml
    python train.py hparams/ccr_wavlm_convtasnet.yaml \\
        --reference_model=results/convtasnet/1986
    python train.py hparams/convtasnet.yaml \\
        --data_folder=/path/to/VoiceBank-DEMAND-16k

All the training logic lives in ``lobes.brains.enhancement.EnhancementBrain``;
the experiment (enhancer, objectives, optimiser, training loop) is wired in
the YAML itself, from the parameter blocks of ``hparams/enhancement/``, and
CR's feature space is its ``ssl`` namespace (``hparams/ssl/*.yaml``).

Authors
 * noise-robust-sb contributors 2025
"""

import os
import sys

from lobes.brains.enhancement import EnhancementBrain
from lobes.data.enhancement_data import enhancement_datasets
from lobes.data.prepare import prepare_voicebank
from lobes.errors import exit_on_user_error
from lobes.objectives import reference_model_for
from lobes.recipe import (
    fit_and_test,
    load_recipe,
    prepare_corpus,
    setup_experiment,
)


@exit_on_user_error
def main(argv=None):
    """Prepare VoiceBank-DEMAND, train, then test the best checkpoint."""
    hparams, hparams_file, run_opts, overrides = load_recipe(argv)
    # CCR: load the frozen baseline now, or stop in one line saying how.
    reference_model = reference_model_for(
        hparams, os.path.join("hparams", os.path.basename(hparams_file)),
        hparams["seed"],
    )
    setup_experiment(hparams, hparams_file, run_opts, overrides)
    manifests = prepare_corpus(
        prepare_voicebank, hparams, "voicebank",
        valid_speakers=hparams["valid_speakers"],
    )
    datasets = enhancement_datasets(
        manifests,
        sample_rate=hparams["sample_rate"],
        segment_length=hparams["training"]["segment_length"],
        crop_seed=hparams["training"]["crop_seed"],
    )

    brain = EnhancementBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        ssl_features=hparams.get("ssl", {}).get("ssl_features"),
        reference_model=reference_model,
    )
    return fit_and_test(brain, datasets, hparams)


if __name__ == "__main__":
    main(sys.argv[1:])
