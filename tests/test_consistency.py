"""Repository rules that SpeechBrain's upstream checks also enforce.

- every recipe YAML is listed in ``tests/recipes/<Dataset>.csv``;
- every file a CSV row names exists;
- every top-level hparam a recipe YAML (or a shared fragment it includes)
  declares is used: referenced in a YAML with ``<key>``, or read in Python
  as ``hparams["key"]``, ``hparams.get("key")`` or ``hparams.key``.
"""

import glob
import os
import re

import pytest

from lobes.recipe import top_level_keys
from tests.recipe_runner import REPO, load_rows

RECIPE_YAMLS = sorted(
    os.path.relpath(path, REPO)
    for path in glob.glob(
        os.path.join(REPO, "recipes", "*", "*", "hparams", "*.yaml")
    )
)
FRAGMENTS = sorted(
    os.path.relpath(path, REPO)
    for path in glob.glob(os.path.join(REPO, "hparams", "**", "*.yaml"),
                          recursive=True)
)


def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as fin:
        return fin.read()


def _python_sources():
    """train.py files of the recipes and the lobes package, as one text."""
    paths = glob.glob(os.path.join(REPO, "recipes", "**", "*.py"),
                      recursive=True)
    paths += glob.glob(os.path.join(REPO, "lobes", "**", "*.py"),
                       recursive=True)
    return "\n".join(_read(os.path.relpath(p, REPO)) for p in paths)


def _included_by(fragment):
    """Recipe YAMLs that include a fragment."""
    name = os.path.basename(fragment)
    return [y for y in RECIPE_YAMLS + FRAGMENTS if name in _read(y)
            and "!include:" in _read(y)]


def test_recipe_folders_exist():
    assert RECIPE_YAMLS, "no recipe YAML found under recipes/"


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS)
def test_yaml_listed_in_csv(yaml_path):
    dataset = yaml_path.split(os.sep)[1]
    listed = {row["Hparam_file"] for row in load_rows()
              if row["Dataset"] == dataset}
    assert yaml_path in listed, (
        f"{yaml_path} is not listed in tests/recipes/{dataset}.csv"
    )


@pytest.mark.parametrize("row", load_rows(), ids=lambda r: r["Hparam_file"])
def test_csv_files_exist(row):
    for column in ("Script_file", "Hparam_file", "Data_prep_file",
                   "Readme_file"):
        path = row[column].strip()
        if path:
            assert os.path.isfile(os.path.join(REPO, path)), (
                f"{column} {path} does not exist"
            )


def _is_used(key, yaml_texts, python_text):
    ref = re.compile(r"<" + re.escape(key) + r"(?:[>\[.])")
    if any(ref.search(text) for text in yaml_texts):
        return True
    patterns = (
        r"""hparams\[\s*["']""" + re.escape(key) + r"""["']\s*\]""",
        r"""\.get\(\s*["']""" + re.escape(key) + r"""["']""",
        r"""hparams\.""" + re.escape(key) + r"\b",
        r"""getattr\([^)]*["']""" + re.escape(key) + r"""["']""",
    )
    return any(re.search(p, python_text) for p in patterns)


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS + FRAGMENTS)
def test_every_hparam_is_used(yaml_path):
    python_text = _python_sources()
    texts = [_read(yaml_path)]
    if yaml_path in FRAGMENTS:
        texts += [_read(y) for y in _included_by(yaml_path)]
    unused = [
        key for key in top_level_keys(os.path.join(REPO, yaml_path))
        if not key.startswith("__")
        and not _is_used(key, texts, python_text)
    ]
    assert not unused, f"{yaml_path} declares unused hparams: {unused}"
