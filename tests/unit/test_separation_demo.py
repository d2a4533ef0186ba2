"""``python -m lobes.demo --quick``: the demo pipeline end to end (tiny)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
def test_quick_demo_writes_table_plots_and_wavs(mini_cache, tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "lobes.demo", "--out", str(out), "--quick",
         "--epochs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with open(out / "results.json") as fin:
        summary = json.load(fin)
    models = [row["model"] for row in summary["results"]]
    assert models == ["NASS-SepFormer", "SepFormer (baseline)"]
    nass, baseline = summary["results"]
    assert nass["noise_output"] and not baseline["noise_output"]
    # the noise output widens the masknet's last projection only
    assert nass["inference_parameters"] > baseline["inference_parameters"]
    table = (out / "results.md").read_text()
    assert "| NASS-SepFormer |" in table and "SI-SNRi" in proc.stdout
    pngs = summary["spectrograms"]
    assert len(pngs) == 2 and all(os.path.getsize(p) > 10000 for p in pngs)
    wavs = os.listdir(out / "examples")
    assert any(name.endswith("_nass_noise.wav") for name in wavs)
    assert any(name.endswith("_baseline_s2.wav") for name in wavs)
