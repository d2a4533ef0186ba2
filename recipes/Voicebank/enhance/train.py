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
the experiment (model, objectives, training loop) is the YAML's
``experiment`` namespace (``hparams/enhancement/*_experiment.yaml``) and CR's
feature space its ``ssl`` namespace (``hparams/ssl/*.yaml``).

Authors
 * noise-robust-sb contributors 2025
"""

import os
import sys

from lobes.brains.enhancement import EnhancementBrain, reference_model_for
from lobes.data.enhancement_data import enhancement_datasets
from lobes.data.prepare import prepare_voicebank
from lobes.errors import exit_on_user_error
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
    experiment = hparams["experiment"]
    # CCR: load the frozen baseline now, or stop in one line saying how.
    reference_model = reference_model_for(
        experiment, os.path.join("hparams", os.path.basename(hparams_file)),
        hparams["seed"],
    )
    setup_experiment(hparams, hparams_file, run_opts, overrides)
    manifests = prepare_corpus(
        prepare_voicebank, hparams, "voicebank",
        valid_speakers=hparams["valid_speakers"],
    )
    datasets = enhancement_datasets(
        manifests,
        sample_rate=experiment["sample_rate"],
        segment_length=experiment["segment_length"],
        crop_seed=experiment["crop_seed"],
    )

    brain = EnhancementBrain(
        modules=experiment["modules"],
        opt_class=experiment["training"]["opt_class"],
        hparams=experiment,
        run_opts=run_opts,
        checkpointer=experiment["checkpointer"],
        ssl_features=hparams.get("ssl", {}).get("ssl_features"),
        reference_model=reference_model,
    )
    return fit_and_test(brain, datasets, experiment)


if __name__ == "__main__":
    main(sys.argv[1:])
