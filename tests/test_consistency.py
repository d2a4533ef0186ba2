"""Repository rules, SpeechBrain's upstream checks and the hparams/ layer.

- every recipe YAML is listed in ``tests/recipes/<Dataset>.csv``, and every
  file a CSV row names exists;
- every recipe YAML includes at least one fragment of ``hparams/``, every
  fragment there is included by a recipe (directly or through another
  fragment), and every parameter a recipe reaches can be set from its
  command line (one declaration, includes with a mapping);
- every top-level key of a recipe YAML or fragment is used: referenced in a
  YAML (``<key>``, ``<namespace[key]>``) or read in Python;
- no two recipe YAMLs share a block of 10 identical lines (comments and
  blank lines aside): shared text belongs in an ``hparams/`` fragment.
"""

import collections
import glob
import os
import re

import pytest

from lobes.recipe import FragmentTree
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
#: Lines in a row two recipe YAMLs may share.
MAX_SHARED_LINES = 9


def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as fin:
        return fin.read()


def _tree(path):
    return FragmentTree(os.path.join(REPO, path))


def _fragments_of(tree):
    """Every fragment a tree includes, transitively, as repo paths."""
    found = set()
    for child in tree.includes.values():
        found.add(os.path.relpath(child.path, REPO))
        found |= _fragments_of(child)
    return found


def _python_sources():
    """The recipes' scripts and the lobes package, as one text."""
    paths = glob.glob(os.path.join(REPO, "recipes", "**", "*.py"),
                      recursive=True)
    paths += glob.glob(os.path.join(REPO, "lobes", "**", "*.py"),
                       recursive=True)
    return "\n".join(_read(os.path.relpath(p, REPO)) for p in paths)


def _includers(path):
    """Recipe YAMLs and fragments whose includes name this fragment."""
    return [
        other for other in RECIPE_YAMLS + FRAGMENTS
        if path in {os.path.relpath(c.path, REPO)
                    for c in _tree(other).includes.values()}
    ]


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


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS)
def test_recipe_includes_fragments_and_reaches_every_parameter(yaml_path):
    tree = _tree(yaml_path)
    fragments = _fragments_of(tree)
    assert any(f.startswith("hparams" + os.sep) for f in fragments), (
        f"{yaml_path} includes no fragment of hparams/"
    )
    for key in sorted(tree.all_keys()):
        paths = tree.declarations(key)
        assert len(paths) == 1, (
            f"{yaml_path}: --{key} is declared by several fragments at the "
            f"same depth: {paths}"
        )
        for depth, name in enumerate(paths[0]):
            parent = tree.at(paths[0][:depth])
            assert name in parent.mapped, (
                f"{parent.path}: `{name}: !include:` has no mapping, so "
                f"--{key} cannot reach it"
            )


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_every_fragment_is_included_by_a_recipe(fragment):
    included = set()
    for recipe in RECIPE_YAMLS:
        included |= _fragments_of(_tree(recipe))
    assert fragment in included, (
        f"{fragment} is included by no recipe YAML: remove it or use it"
    )


def _is_used(key, yaml_texts, python_text):
    ref = re.compile(
        r"<(?:[\w.]+\[)*" + re.escape(key) + r"(?:[>\[.\]])"
    )
    if any(ref.search(text) for text in yaml_texts):
        return True
    patterns = (
        r"""\[\s*["']""" + re.escape(key) + r"""["']\s*\]""",
        r"""\.get\(\s*["']""" + re.escape(key) + r"""["']""",
        r"""hparams\.""" + re.escape(key) + r"\b",
        r"""getattr\([^)]*["']""" + re.escape(key) + r"""["']""",
    )
    return any(re.search(p, python_text) for p in patterns)


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS + FRAGMENTS)
def test_every_hparam_is_used(yaml_path):
    python_text = _python_sources()
    texts = [_read(yaml_path)] + [_read(y) for y in _includers(yaml_path)]
    unused = [
        key for key in _tree(yaml_path).defaults
        if not key.startswith("__")
        and not _is_used(key, texts, python_text)
    ]
    assert not unused, f"{yaml_path} declares unused hparams: {unused}"


def shared_blocks(paths, size=MAX_SHARED_LINES + 1):
    """Blocks of ``size`` identical lines found in more than one file.

    Lines are compared without trailing blanks; blank lines and whole-line
    comments are left out.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a", "b"):
    ...     _ = open(f"{folder}/{name}.yaml", "w").write(
    ...         "".join(f"k{i}: {i}\\n" for i in range(10)) + f"x: {name}\\n")
    >>> [sorted(files) for files, _ in shared_blocks(
    ...     [f"{folder}/a.yaml", f"{folder}/b.yaml"])] == [
    ...     [f"{folder}/a.yaml", f"{folder}/b.yaml"]]
    True
    """
    seen = collections.defaultdict(set)
    for path in paths:
        with open(path, encoding="utf-8") as fin:
            lines = [
                line.rstrip() for line in fin
                if line.strip() and not line.lstrip().startswith("#")
            ]
        for start in range(len(lines) - size + 1):
            seen["\n".join(lines[start:start + size])].add(path)
    return [(files, block) for block, files in seen.items() if len(files) > 1]


def test_shared_blocks_finds_a_copied_block(tmp_path):
    block = "".join(f"key{i}: {i}\n" for i in range(MAX_SHARED_LINES + 1))
    (tmp_path / "a.yaml").write_text("a: 1\n" + block)
    (tmp_path / "b.yaml").write_text("# other\n" + block + "b: 2\n")
    (tmp_path / "c.yaml").write_text(block[: block.rindex("key")])
    found = shared_blocks([str(tmp_path / n) for n in ("a.yaml", "b.yaml",
                                                       "c.yaml")])
    assert [sorted(os.path.basename(f) for f in files)
            for files, _ in found] == [["a.yaml", "b.yaml"]]


def test_no_block_of_ten_lines_repeats_across_recipe_yamls():
    found = shared_blocks([os.path.join(REPO, p) for p in RECIPE_YAMLS])
    report = [
        f"{', '.join(os.path.relpath(f, REPO) for f in sorted(files))}:\n"
        f"{block}"
        for files, block in found[:3]
    ]
    assert not found, (
        f"{len(found)} blocks of {MAX_SHARED_LINES + 1} identical lines "
        "repeat across recipe YAMLs; move them into an hparams/ fragment:\n"
        + "\n---\n".join(report)
    )
