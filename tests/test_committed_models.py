"""The committed models are the ones their results files name."""

import json
import os

import pytest

from benchmarks.cr_vs_baseline import TRAINED_SSL, ssl_weights_sha256
from benchmarks.paired import REPO


def test_committed_ssl_model_is_the_one_of_its_results_file():
    with open(os.path.join(REPO, "benchmarks", "results",
                           "ssl_hubert_small.json"), encoding="utf-8") as fin:
        recorded = json.load(fin)["model"]["weights_sha256"]
    assert ssl_weights_sha256(TRAINED_SSL) == recorded
    for name in ("config.json", "preprocessor_config.json"):
        assert os.path.isfile(os.path.join(TRAINED_SSL, name))


def test_committed_backbone_archives_are_the_recorded_ones():
    import glob

    from benchmarks.run_archive import file_sha256

    paths = glob.glob(os.path.join(REPO, "benchmarks", "results",
                                   "cr_protocol*.json"))
    archived = []
    for path in paths:
        with open(path, encoding="utf-8") as fin:
            runs = json.load(fin).get("runs", [])
        archived += [run["archive"] for run in runs if "archive" in run]
    if not archived:
        pytest.skip("no archived backbone committed yet")
    for entry in archived:
        archive = os.path.join(REPO, entry["file"])
        assert file_sha256(archive) == entry["sha256"], archive
