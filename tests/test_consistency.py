"""Repository rules, SpeechBrain's upstream checks and the hparams/ layer.

- every recipe YAML is listed in ``tests/recipes/<Dataset>.csv``, and every
  file a CSV row names exists;
- every recipe YAML includes at least one fragment of ``hparams/``, one
  level deep: no fragment includes another; every fragment there is
  included by a recipe, and every parameter a recipe reaches can be set
  from its command line (one route,
  :meth:`lobes.overrides.FragmentTree.routes`);
- every top-level key of a recipe YAML or fragment is used: referenced in a
  YAML (``<key>``, ``<namespace[key]>``) or read in Python;
- no two recipe YAMLs share a block of 8 identical parameter lines (the
  recipe's own plain values): parameters with their sources live once, in
  an ``hparams/`` fragment. The wiring (objects, references, the mappings
  that list them) may repeat across recipes, as in SpeechBrain.
"""

import collections
import functools
import glob
import os
import re

import pytest

from lobes.overrides import FragmentTree
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
#: Parameter lines in a row two recipe YAMLs may share (a corpus's data
#: options, as every SpeechBrain recipe of a corpus has them).
MAX_SHARED_LINES = 7


# The files do not change during a session: each is read and parsed once,
# not once per parametrised test.
@functools.cache
def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as fin:
        return fin.read()


@functools.cache
def _tree(path):
    return FragmentTree(os.path.join(REPO, path))


def _fragments_of(tree):
    """Every fragment a tree includes (transitively), as repo paths."""
    found = set()
    for child in tree.includes.values():
        found.add(os.path.relpath(child.path, REPO))
        found |= _fragments_of(child)
    return found


@functools.cache
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
    assert not tree.includes or any(
        f.startswith("hparams" + os.sep) for f in fragments
    ), (
        f"{yaml_path} includes no fragment of hparams/"
    )
    for key in sorted(tree.all_keys()):
        paths = tree.routes(key)
        assert len(paths) == 1, (
            f"{yaml_path}: --{key} is declared by several fragments at the "
            f"same depth: {paths}"
        )


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS + FRAGMENTS)
def test_includes_are_one_level_deep(yaml_path):
    """A recipe includes parameter blocks that include nothing; a fragment
    includes nothing."""
    tree = _tree(yaml_path)
    if yaml_path in FRAGMENTS:
        assert not tree.includes, (
            f"{yaml_path} includes {sorted(tree.includes)}: a fragment of "
            "hparams/ is one parameter block and includes nothing"
        )
    for name, child in tree.includes.items():
        assert not child.includes, (
            f"{yaml_path}: `{name}` includes {child.path}, which includes "
            f"{sorted(child.includes)}: move that wiring into the recipe"
        )


def test_one_level_check_finds_a_nested_include(tmp_path):
    (tmp_path / "inner.yaml").write_text("a: 1\n")
    (tmp_path / "outer.yaml").write_text("b: !include:inner.yaml\n")
    (tmp_path / "r.yaml").write_text("c: !include:outer.yaml\n")
    tree = FragmentTree(str(tmp_path / "r.yaml"))
    assert [
        name for name, child in tree.includes.items() if child.includes
    ] == ["c"]


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


def parameter_blocks(text):
    """The blocks of top-level ``key: value`` lines whose value is plain.

    A block ends at a comment line, a blank line or wiring: a tagged value
    (``!new:``, ``!ref``, ``!include:``...) or a mapping (with what it
    holds). Values are compared without their comments.

    Example
    -------
    >>> parameter_blocks("a: 1  # one\\nb: 2\\n\\nc: !ref <a>\\nd:\\n"
    ...                  "  e: 3\\nf: x\\n")
    [['a: 1', 'b: 2'], ['f: x']]
    """
    blocks, block = [], []
    for line in text.splitlines():
        match = re.match(r"^(\w+):[ \t]*([^#]*?)[ \t]*(#.*)?$", line)
        value = match.group(2) if match else ""
        if value and not value.startswith(("!", "&", "*")):
            block.append(f"{match.group(1)}: {value}")
        elif not (line.startswith((" ", "\t")) and not block):
            if block:
                blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    return blocks


def shared_blocks(paths, size=MAX_SHARED_LINES + 1):
    """Runs of ``size`` identical parameter lines in more than one file.

    A run lies within one of the file's :func:`parameter_blocks`.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a", "b"):
    ...     _ = open(f"{folder}/{name}.yaml", "w").write(
    ...         "".join(f"k{i}: {i}\\n" for i in range(8)) + f"x: {name}\\n")
    >>> [sorted(files) for files, _ in shared_blocks(
    ...     [f"{folder}/a.yaml", f"{folder}/b.yaml"])] == [
    ...     [f"{folder}/a.yaml", f"{folder}/b.yaml"]]
    True
    """
    seen = collections.defaultdict(set)
    for path in paths:
        with open(path, encoding="utf-8") as fin:
            blocks = parameter_blocks(fin.read())
        for lines in blocks:
            for start in range(len(lines) - size + 1):
                seen["\n".join(lines[start:start + size])].add(path)
    return [(files, block) for block, files in seen.items() if len(files) > 1]


def test_shared_blocks_finds_a_copied_block(tmp_path):
    block = "".join(f"key{i}: {i}\n" for i in range(MAX_SHARED_LINES + 1))
    (tmp_path / "a.yaml").write_text("a: 1\n" + block)
    (tmp_path / "b.yaml").write_text("# other\n" + block + "b: 2\n")
    (tmp_path / "c.yaml").write_text(block[: block.rindex("key")])
    wiring = "".join(
        f"obj{i}: !new:torch.nn.Identity\n" for i in range(12)
    )
    (tmp_path / "d.yaml").write_text(wiring)
    (tmp_path / "e.yaml").write_text("x: 1\n" + wiring)
    found = shared_blocks([str(tmp_path / n) for n in (
        "a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml")])
    assert [sorted(os.path.basename(f) for f in files)
            for files, _ in found] == [["a.yaml", "b.yaml"]]


def test_no_block_of_parameters_repeats_across_recipe_yamls():
    found = shared_blocks([os.path.join(REPO, p) for p in RECIPE_YAMLS])
    report = [
        f"{', '.join(os.path.relpath(f, REPO) for f in sorted(files))}:\n"
        f"{block}"
        for files, block in found[:3]
    ]
    assert not found, (
        f"{len(found)} blocks of {MAX_SHARED_LINES + 1} identical parameter "
        "lines repeat across recipe YAMLs; move them into an hparams/ "
        "fragment:\n"
        + "\n---\n".join(report)
    )
