"""The WHAM! separation recipe under DDP: two CPU processes, gloo backend."""

import csv
import glob
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_and_test(mini_cache, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node=2", f"--master_port={_free_port()}",
        "train.py", "hparams/nass_sepformer.yaml", f"--output_folder={out}",
        "--distributed_backend=gloo", "--device=cpu",
        "--mini_corpus_size=tiny", "--num_workers=0",
        "--encoder_channels=16", "--num_transformer_layers=1",
        "--num_heads=2", "--d_ffn=32", "--chunk_size=20",
        "--num_dual_path_blocks=1", "--nce_num_patches=16",
        "--nce_embed_dim=16", "--segment_seconds=0.5", "--batch_size=2",
        "--number_of_epochs=1", "--eval_max_seconds=1.0",
        "--noprogressbar", "--dynamic_mixing=True", "--save_audio=False",
    ]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with open(out / "train_log.txt") as fin:
        log = fin.read()
    assert log.count("epoch: 1,") == 1, "only the main process logs"
    assert "Epoch loaded: 1" in log
    with open(out / "test_results.csv") as fin:
        rows = list(csv.DictReader(fin))
    assert len(rows) == 4 + 1 and rows[-1]["snt_id"] == "avg"
    assert len(glob.glob(str(out / "save" / "CKPT+*" / "separator.ckpt"))) == 1
