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
    from benchmarks.run_archive import file_sha256

    path = os.path.join(REPO, "benchmarks", "results", "cr_protocol.json")
    if not os.path.isfile(path):
        pytest.skip("no cr_protocol results committed yet")
    with open(path, encoding="utf-8") as fin:
        runs = json.load(fin)["runs"]
    for run in runs:
        if "archive" in run:
            archive = os.path.join(REPO, run["archive"]["file"])
            assert file_sha256(archive) == run["archive"]["sha256"], archive
