"""README tables agree with the committed results files they come from."""

import glob
import json
import os
import re
import subprocess

import pytest

from benchmarks import provenance, report

REPO = report.REPO
LOCAL_PATH = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/[\w.-]")
#: In docs, /tmp/... is an example a reader can use; these are not.
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home|Users)/[\w.-]")


def _tracked(path):
    return subprocess.run(
        ["git", "ls-files", "--error-unmatch", path], cwd=REPO,
        capture_output=True, check=False,
    ).returncode == 0


def test_every_readme_table_matches_its_results_file():
    assert report.update(check=True) == []


@pytest.mark.parametrize("readme", report.readme_files())
def test_readme_tables_come_from_committed_files(readme):
    with open(os.path.join(REPO, readme), encoding="utf-8") as fin:
        for match in report.tables(fin.read()):
            assert _tracked(match["results"]), (
                f"{readme} renders {match['results']}, which git does not "
                "track: commit it"
            )


def test_a_changed_table_is_found(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"rows": []}))
    table = report.render(str(results), "enhancement_cost.markdown_table",
                          root="/")
    stale = table.replace("GMAC/s", "GMAC")
    text = f"<!-- table: {results} enhancement_cost.markdown_table -->\n"
    for body, same in ((table, True), (stale, False)):
        (match,) = report.tables(text + body + "<!-- /table -->\n")
        assert (report.render(match["results"], match["renderer"], "/")
                == match["body"]) is same


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "benchmarks", "results",
                                          "*.json")))
)
def test_results_files_carry_their_provenance(path):
    with open(path, encoding="utf-8") as fin:
        text = fin.read()
    block = json.loads(text).get("provenance", {})
    assert sorted(set(provenance.REQUIRED) - set(block)) == []
    assert len(block["commit"]) == 40
    assert not LOCAL_PATH.search(text), LOCAL_PATH.search(text)


def test_no_doc_names_a_path_of_the_machine_that_wrote_it():
    docs = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO,
                          capture_output=True, text=True).stdout.split()
    found = []
    for doc in docs:
        with open(os.path.join(REPO, doc), encoding="utf-8") as fin:
            for number, line in enumerate(fin, 1):
                if MACHINE_PATH.search(line):
                    found.append(f"{doc}:{number}: {line.strip()}")
    assert found == []
