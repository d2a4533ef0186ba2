#!/usr/bin/env python3
"""Train and test a CTC speech recogniser on VoiceBank-DEMAND (16 kHz).

The YAML picks what the recogniser hears: the noisy speech (baseline), the
clean speech (upper bound), the noisy speech enhanced by a frozen enhancer
of ``recipes/Voicebank/enhance``, or the enhancer fine-tuned jointly with
the recogniser:

    python train.py hparams/ctc_noisy.yaml --encoder=fbank      # mini corpus
    python train.py hparams/ctc_clean.yaml --encoder=fbank
    python train.py hparams/ctc_enhanced.yaml --encoder=fbank \\
        --enhancer=../enhance/results/convtasnet/1986
    python train.py hparams/ctc_joint.yaml --ssl_source=<SSL folder> \\
        --enhancer=../enhance/results/convtasnet/1986
    python train.py hparams/ctc_noisy.yaml --data_folder=/path/to/voicebank

All the training logic lives in ``lobes.brains.asr.ASRBrain``; the
experiment (recogniser, front end, objectives, optimiser, training loop) is
wired in the YAML itself, from the parameter blocks of ``hparams/`` (the
recogniser, CR's settings, the training loop), and CR's
feature space its ``ssl`` namespace (``hparams/ssl/*.yaml``). The test
writes ``wer_test.txt`` and ``cer_test.txt`` to the output folder.

Authors
 * noise-robust-sb contributors 2025
"""

import sys

from lobes.brains.asr import ASRBrain
from lobes.data.prepare import prepare_voicebank
from lobes.errors import exit_on_user_error
from lobes.recipe import fit_and_test, prepare_corpus, start_experiment
from lobes.transcription import asr_datasets


@exit_on_user_error
def main(argv=None):
    """Prepare VoiceBank-DEMAND, train, then test the best checkpoint."""
    hparams, _, run_opts = start_experiment(argv)
    manifests = prepare_corpus(
        prepare_voicebank, hparams, "voicebank",
        valid_speakers=hparams["valid_speakers"],
    )
    datasets = asr_datasets(
        manifests,
        label_encoder=hparams["recognizer"]["label_encoder"],
        sample_rate=hparams["sample_rate"],
    )

    brain = ASRBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        ssl_features=hparams.get("ssl", {}).get("ssl_features"),
    )
    return fit_and_test(brain, datasets, hparams)


if __name__ == "__main__":
    main(sys.argv[1:])
