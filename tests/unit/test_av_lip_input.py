"""Real lip input of the test-time tools (layouts, range, size, rate,
duration) and lip normalisation over valid frames only."""

import numpy as np
import pytest
import torch

from lobes.data import lip_input
from lobes.errors import DataFolderError
from lobes.models.av_features import SineSTFT, lips_per_frame
from lobes.models.av_vae import AVCVAE
from lobes.separation_mcem import AVMixture, lips_batch, separate_vae


def _upright_frames(count=12, height=67, width=67, seed=0):
    """Frames with a known orientation: bright top rows, dark left columns,
    plus per-frame noise (so every frame differs)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(60, 120, (count, height, width)).astype(np.uint8)
    frames[:, : height // 4] = 250  # bright top
    frames[:, :, : width // 5] = 5  # dark left
    return frames


def _authors_layout(frames):
    """(H*W) x T as MATLAB writes ``reshape(frame, [], 1)`` per column."""
    return np.stack([frame.flatten(order="F") for frame in frames], axis=1)


def test_detect_layout_rule():
    assert lip_input.detect_layout((90, 32, 32)) == "frames"
    assert lip_input.detect_layout((4489, 144)) == "columns"
    assert lip_input.detect_layout((1024, 3)) == "columns"
    assert lip_input.detect_layout((144, 4489)) is None  # T x (H*W)
    assert lip_input.detect_layout((4490, 144)) is None  # not a square
    assert lip_input.detect_layout((16, 20)) is None  # square, not larger


def test_authors_column_major_layout_round_trips(tmp_path):
    frames = _upright_frames()
    columns = _authors_layout(frames)
    assert columns.shape == (4489, 12)
    path = tmp_path / "lips.npy"
    np.save(path, columns)
    lips = lip_input.load_lips(str(path))
    assert lips.frames.shape == (12, 67, 67) and lips.fps == 30.0
    assert lips.frames.dtype == torch.float32
    np.testing.assert_allclose(lips.frames.numpy() * 255, frames, atol=1e-3)
    # upright: the bright rows are at the top, the dark columns at the left
    assert float(lips.frames[:, :5, 20:].mean()) > 0.95
    assert float(lips.frames[:, 20:, :5].mean()) < 0.05
    # a C-order reshape would lie on its side
    sideways = columns[:, 0].reshape(67, 67)
    assert not np.array_equal(sideways, frames[0])
    np.testing.assert_array_equal(sideways.T, frames[0])


def test_rectangular_columns_need_their_frame_shape():
    frames = _upright_frames(count=3, height=6, width=10)
    columns = _authors_layout(frames).astype(np.float32) / 255.0
    out = lip_input.to_frames(columns, "columns", frame_shape=(6, 10))
    np.testing.assert_allclose(out, frames / 255.0, atol=1e-6)
    with pytest.raises(DataFolderError, match="T x H x W nor"):
        lip_input.to_frames(columns)  # 60 is not a square
    with pytest.raises(DataFolderError, match="do not hold 7x9"):
        lip_input.to_frames(columns, "columns", frame_shape=(7, 9))


def test_frames_layout_and_value_ranges(tmp_path):
    frames = _upright_frames(count=5, height=20, width=24)
    path = tmp_path / "a.npy"
    np.save(path, frames)
    loaded = lip_input.load_lips(str(path)).frames
    np.testing.assert_allclose(loaded.numpy(), frames / 255.0, atol=1e-6)
    np.save(path, frames / 255.0)  # float64 in [0, 1]
    np.testing.assert_allclose(
        lip_input.load_lips(str(path)).frames.numpy(), frames / 255.0,
        atol=1e-6,
    )  # fmt: skip
    bad = {
        "float_255.npy": (frames.astype(np.float32), "divide grey levels"),
        "int16.npy": (frames.astype(np.int16) * 4, r"\[0, 255\]"),
        "nan.npy": (np.full((3, 4, 4), np.nan, np.float32), "NaN"),
        "bool.npy": (np.ones((3, 4, 4), bool), "dtype bool"),
        "t_by_pixels.npy": (np.zeros((144, 4489), np.float32), "transpose"),
        "vector.npy": (np.zeros(100, np.float32), "1-D lips"),
    }
    for name, (array, message) in bad.items():
        np.save(tmp_path / name, array)
        with pytest.raises(DataFolderError, match=message) as error:
            lip_input.load_lips(str(tmp_path / name))
        assert str(error.value).startswith(str(tmp_path / name))
        assert "\n" not in str(error.value)
    with pytest.raises(DataFolderError, match="no such lips file"):
        lip_input.load_lips(str(tmp_path / "missing.npy"))
    with pytest.raises(DataFolderError, match="unknown lips layout"):
        lip_input.load_lips(str(path), layout="rows")
    with pytest.raises(DataFolderError, match="not T x H x W"):
        np.save(path, _authors_layout(frames[:, :4, :4]))
        lip_input.load_lips(str(path), layout="frames")


def test_mat_files(tmp_path):
    import scipy.io

    frames = _upright_frames(count=4)
    scipy.io.savemat(tmp_path / "lips.mat",
                     {"lips": _authors_layout(frames) / 255.0})  # fmt: skip
    loaded = lip_input.load_lips(str(tmp_path / "lips.mat")).frames
    np.testing.assert_allclose(loaded.numpy() * 255, frames, atol=1e-3)
    scipy.io.savemat(tmp_path / "two.mat", {"a": frames[0], "b": frames[1]})
    with pytest.raises(DataFolderError, match="exactly one"):
        lip_input.load_lips(str(tmp_path / "two.mat"))
    (tmp_path / "broken.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataFolderError, match="broken.mat"):
        lip_input.load_lips(str(tmp_path / "broken.mat"))


def test_resize_to_the_model_size():
    frames = torch.from_numpy(_upright_frames(count=3) / 255.0).float()
    small = lip_input.resize_frames(frames, (32, 32))
    assert small.shape == (3, 32, 32)
    assert abs(float(small.mean()) - float(frames.mean())) < 0.01
    assert float(small[:, :6, 12:].mean()) > 0.9  # still upright
    big = lip_input.resize_frames(small, (64, 48))
    assert big.shape == (3, 64, 48)
    assert float(big.min()) >= 0.0 and float(big.max()) <= 1.0


def test_frame_rate_conversion_matches_the_training_rule():
    """Lips converted to the STFT's rate and normalised give exactly the
    frames the model gets from the same lips at the video's rate."""
    stft = SineSTFT(1024, 256)
    samples = 48000  # 3 s
    frames = torch.from_numpy(_upright_frames(count=90, height=8, width=8))
    num_frames = stft.num_frames(samples)
    direct = lips_per_frame(frames[None], [90], num_frames, 256, 16000, 30,
                            valid_frames=[num_frames])  # fmt: skip
    rate = 16000 / 256
    converted = lip_input.to_frame_rate(frames.float() / 255, 30.0, rate,
                                        num_frames)  # fmt: skip
    assert converted.shape[0] == num_frames
    again = lips_per_frame(converted[None], [num_frames], num_frames, 256,
                           16000, rate, valid_frames=[num_frames])  # fmt: skip
    torch.testing.assert_close(again, direct, atol=1e-5, rtol=1e-5)
    # 62.5 STFT frames a second from 30 video frames: each video frame twice
    # or three times, in order
    index = lip_input.frame_index(num_frames, rate, 30.0, 90)
    assert index[0] == 0 and index[-1] == 89
    assert set(torch.diff(index).tolist()) <= {0, 1}


def test_duration_check_is_one_line_with_both_durations(tmp_path):
    path = tmp_path / "lips.npy"
    np.save(path, _authors_layout(_upright_frames(count=10)))
    with pytest.raises(DataFolderError) as error:
        lip_input.load_lips(str(path), audio_seconds=4.8)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "0.33 s" in message and "4.80 s" in message and "--fps" in message
    # within 0.5 s (or 10 %): accepted, and padded to the audio's frames
    np.save(path, _authors_layout(_upright_frames(count=140)))
    lips = lip_input.load_lips(str(path), audio_seconds=4.8, rate=62.5,
                               num_frames=301)  # fmt: skip
    assert lips.frames.shape[0] == 301
    assert lip_input.duration_tolerance(20.0) == pytest.approx(2.0)
    lip_input.check_duration("x", 30 * 19, 30.0, 20.0)  # 1 s off of 20 s
    with pytest.raises(DataFolderError):
        lip_input.check_duration("x", 30 * 17, 30.0, 20.0)  # 3 s off


def test_wrong_frame_size_at_test_time_is_one_line():
    vae = AVCVAE(65, 2, 4, visual_dim=16, trunk_hidden=4, trunk_dim=3).eval()
    lips = [torch.rand(8, 67, 67)]
    items = [AVMixture("mix7", torch.randn(1600), lips, 30.0)]
    from lobes.models.mcem import MCEM

    mcem = MCEM(num_iterations=1, num_mh_steps=2, burn_in=1, noise_rank=2)
    with pytest.raises(DataFolderError, match="mix7, lips of speaker 1: "
                       "lips of 67x67 = 4489 pixels") as error:  # fmt: skip
        separate_vae(vae, mcem, items, SineSTFT(128, 32), 16000,
                     torch.Generator().manual_seed(0))  # fmt: skip
    assert "resize the frames to 4x4" in str(error.value)


def test_lips_batch_refuses_lips_far_shorter_than_the_audio():
    lips = [torch.zeros(10, 4, 4, dtype=torch.uint8)]
    item = AVMixture("utt", torch.zeros(16000 * 4), lips, 30.0)
    with pytest.raises(DataFolderError, match="0.33 s but the audio lasts "
                       "4.00 s"):  # fmt: skip
        lips_batch([item], 251, SineSTFT(1024, 256), 16000)


def _utterance(count, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (count, 6, 6), np.uint8))


def test_normalisation_does_not_depend_on_the_batch():
    """An utterance alone, or padded in a batch with a longer one, gets the
    same normalised frames over its valid frames."""
    short, long = _utterance(30, 1), _utterance(75, 2)
    alone = lips_per_frame(short[None], [30], 63, 256, 16000, 30)
    batch = torch.zeros(2, 75, 6, 6, dtype=torch.uint8)
    batch[0, :30], batch[1] = short, long
    together = lips_per_frame(batch, [30, 75], 157, 256, 16000, 30)
    torch.testing.assert_close(together[0, :63], alone[0])
    # with the audio's valid frames given (as the Brain's frame mask does)
    given = lips_per_frame(batch, [30, 75], 157, 256, 16000, 30,
                           valid_frames=torch.tensor([63, 157]))  # fmt: skip
    torch.testing.assert_close(given[0, :63], alone[0])
    # uint8 and the same lips in [0, 1] normalise alike
    as_float = lips_per_frame(short[None].float() / 255, [30], 63, 256,
                              16000, 30)  # fmt: skip
    torch.testing.assert_close(as_float, alone, atol=1e-5, rtol=1e-5)
    # the statistics are over valid frames: zero mean, unit spread there
    assert float(alone.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(alone.pow(2).mean().sqrt()) == pytest.approx(1.0, abs=0.01)


def test_lips_batch_does_not_depend_on_the_other_mixtures():
    stft = SineSTFT(1024, 256)
    short = AVMixture("a", torch.randn(16000), [_utterance(30, 3)], 30.0)
    long = AVMixture("b", torch.randn(40000), [_utterance(75, 4)], 30.0)
    alone = lips_batch([short], stft.num_frames(16000), stft, 16000)
    together = lips_batch([short, long], stft.num_frames(40000), stft, 16000)
    frames = stft.num_frames(16000)
    torch.testing.assert_close(together[0, :, :frames], alone[0])
