"""Curricula over CR negatives: documented schedules and resuming."""

import pytest
from speechbrain.utils.checkpoints import Checkpointer

from lobes.losses.curriculum import (
    QualityCurriculum,
    SimilarityCurriculum,
    UniformCurriculum,
)


def test_quality_curriculum_follows_c2pnet():
    curriculum = QualityCurriculum(["noisy", "ref1", "ref2"], lam=0.25)
    # Beats nothing yet: raw [2, 0.75, 0.75] (input weighs #model negatives).
    assert curriculum.current_weights == pytest.approx(
        [2 / 3.5, 0.75 / 3.5, 0.75 / 3.5]
    )
    weights = curriculum.update(3.0, [None, 3.2, 2.5])
    assert weights == pytest.approx([2 / 4, 0.75 / 4, 1.25 / 4])
    assert sum(weights) == pytest.approx(1.0)
    # A worse validation score leaves the weights alone.
    assert curriculum.update(2.0, [1.0, 1.0]) == weights
    # A new best that beats both model negatives.
    assert curriculum.update(3.5, [3.2, 2.5]) == pytest.approx(
        [2 / 4.5, 1.25 / 4.5, 1.25 / 4.5]
    )
    assert "best 3.500" in curriculum.describe()


def test_quality_curriculum_lower_is_better():
    curriculum = QualityCurriculum(
        ["noisy", "reference"], higher_is_better=False
    )
    assert curriculum.update(0.1, [0.2]) == pytest.approx(
        [1 / 2.25, 1.25 / 2.25]
    )
    assert curriculum.update(0.3, [0.2]) == pytest.approx(
        [1 / 2.25, 1.25 / 2.25]
    )


def test_quality_curriculum_checks_sizes():
    with pytest.raises(ValueError, match="negative qualities"):
        QualityCurriculum(["noisy", "a", "b"]).update(1.0, [1, 2, 3, 4])


def test_similarity_curriculum_moves_from_easy_to_hard():
    curriculum = SimilarityCurriculum(
        ["noisy", "other", "reference"], ramp_epochs=11
    )
    distances = [4.0, 4.0, 0.5]  # two equally easy ones, one hard one
    history = [curriculum.weights(epoch, distances) for epoch in range(1, 13)]
    for weights in history:
        assert sum(weights) == pytest.approx(1.0)
    first, middle, last = history[0], history[5], history[-1]
    assert first[0] == pytest.approx(first[1]) and first[0] > first[2]
    assert middle == pytest.approx([1 / 3] * 3)
    # the end weight is reached in the last epoch of the ramp (epoch 11)
    assert last[2] > last[0] and history[10] == last
    hard = [weights[2] for weights in history]
    assert all(a <= b for a, b in zip(hard, hard[1:]))
    assert min(hard) >= 0.1 / 3  # uniform_mix keeps every negative
    assert "epoch 12, p=1.00" in curriculum.describe()
    assert "reference=" in curriculum.describe()


def test_similarity_curriculum_uses_observed_distances():
    curriculum = SimilarityCurriculum(["noisy", "reference"], ramp_epochs=2)
    assert curriculum.weights(1) == [0.5, 0.5]  # nothing observed yet
    curriculum.observe([3.0, 1.0])
    curriculum.observe([1.0, 1.0])
    assert curriculum.mean_distances() == [2.0, 1.0]
    assert curriculum.weights(1) == curriculum.weights(1, [2.0, 1.0])
    assert curriculum.weights(1)[0] > 0.5
    assert curriculum.weights(1, [1.0, 1.0]) == pytest.approx([0.5, 0.5])


def test_curricula_resume_from_state_dict():
    quality = QualityCurriculum(["noisy", "reference"])
    quality.update(3.0, [2.0])
    similarity = SimilarityCurriculum(["noisy", "reference"], ramp_epochs=4)
    similarity.observe([2.0, 0.5])
    similarity.weights(3)

    quality_again, similarity_again = (
        QualityCurriculum(["noisy", "reference"]),
        SimilarityCurriculum(["noisy", "reference"], ramp_epochs=4),
    )
    quality_again.load_state_dict(quality.state_dict())
    similarity_again.load_state_dict(similarity.state_dict())
    assert quality_again.current_weights == quality.current_weights
    # A lower score after resuming must not count as a new best.
    assert quality_again.update(2.5, [2.0]) == quality.current_weights
    assert similarity_again.describe() == similarity.describe()
    assert similarity_again.weights(4) == similarity.weights(4)


def test_curricula_resume_through_speechbrain_checkpointer(tmp_path):
    quality = QualityCurriculum(["noisy", "reference"])
    quality.update(3.0, [3.5])
    similarity = SimilarityCurriculum(["noisy", "reference"])
    similarity.observe([2.0, 0.5])
    similarity.weights(5)
    checkpointer = Checkpointer(
        str(tmp_path),
        recoverables={"quality": quality, "similarity": similarity},
    )
    checkpointer.save_checkpoint()

    fresh_quality, fresh_similarity = (
        QualityCurriculum(["noisy", "reference"]),
        SimilarityCurriculum(["noisy", "reference"]),
    )
    Checkpointer(
        str(tmp_path),
        recoverables={"quality": fresh_quality, "similarity": fresh_similarity},
    ).recover_if_possible()
    assert fresh_quality.state_dict() == quality.state_dict()
    assert fresh_similarity.state_dict() == similarity.state_dict()


def test_uniform_curriculum_is_a_checkpointed_curriculum(tmp_path):
    uniform = UniformCurriculum(["noisy", "reference"])
    assert uniform.epoch_weights(3) == [0.5, 0.5]  # normalised as the others
    assert not uniform.uses_validation_quality
    Checkpointer(str(tmp_path), {"c": uniform}).save_checkpoint()
    fresh = UniformCurriculum(["noisy", "reference"])
    Checkpointer(str(tmp_path), {"c": fresh}).recover_if_possible()
    assert fresh.state_dict() == uniform.state_dict()


def test_similarity_curriculum_survives_a_one_epoch_run():
    curriculum = SimilarityCurriculum(["noisy", "reference"], ramp_epochs=1)
    weights = curriculum.weights(1, [2.0, 0.5])
    assert curriculum.progress(1) == 1.0  # the end weight, at once
    assert weights[1] > weights[0] and sum(weights) == pytest.approx(1.0)


def test_quality_curriculum_needs_every_measure_to_improve():
    curriculum = QualityCurriculum(["noisy", "reference"])
    start = curriculum.update({"pesq": 2.0, "si_sdr": 8.0},
                              [None, {"pesq": 2.5, "si_sdr": 9.0}])
    # Better PESQ, worse SI-SDR: not a new best, the weights stay.
    assert curriculum.update({"pesq": 3.0, "si_sdr": 7.0},
                             [None, {"pesq": 2.5, "si_sdr": 9.0}]) == start
    assert curriculum.best_quality == {"pesq": 2.0, "si_sdr": 8.0}
    # Both better, and the model now beats the reference on both.
    after = curriculum.update({"pesq": 3.0, "si_sdr": 10.0},
                              [None, {"pesq": 2.5, "si_sdr": 9.0}])
    assert after[1] > start[1] and curriculum.beaten == [True]
