"""Write the README tables from the committed results files.

Every results table in a README sits between two markers that name its
results file and the function that renders it::

    <!-- table: benchmarks/results/x.json x.markdown_table -->
    | ... the table ... |
    <!-- /table -->

``python -m benchmarks.report`` (``make tables``) renders each table from
its file and rewrites what stands between the markers; ``--check`` writes
nothing and exits 1, naming each table that differs from its file (the test
suite runs it). Renderers are functions of the modules of this package that
take the loaded JSON and return markdown.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import importlib
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MARKER = re.compile(
    r"(?P<open><!-- table: (?P<results>\S+) (?P<renderer>[\w.]+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /table -->)",
    re.DOTALL,
)


def readme_files(root=REPO):
    """The README files of the repository that git tracks.

    Arguments
    ---------
    root : str
        The repository.

    Returns
    -------
    list of str
        Paths relative to ``root``.

    Example
    -------
    >>> "README.md" in readme_files()
    True
    """
    listed = subprocess.run(
        ["git", "ls-files", "README.md", "*/README.md"], cwd=root,
        capture_output=True, text=True, check=False,
    ).stdout.split()
    return sorted(listed)


def render(results, renderer, root=REPO):
    """One table, rendered from its results file.

    Arguments
    ---------
    results : str
        The results file, relative to ``root``.
    renderer : str
        ``module.function`` of this package.
    root : str
        The repository.

    Returns
    -------
    str
        The markdown, ending with a newline.

    Example
    -------
    >>> render("no/such.json", "paired.fmt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such.json: no such results file (commit it, ...
    """
    path = os.path.join(root, results)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{results}: no such results file (commit it, or run the "
            "benchmark that writes it)"
        )
    module, function = renderer.rsplit(".", 1)
    render_table = getattr(
        importlib.import_module(f"benchmarks.{module}"), function
    )
    with open(path, encoding="utf-8") as fin:
        table = render_table(json.load(fin))
    return table.rstrip("\n") + "\n"


def tables(text):
    """The marked tables of a README's text.

    Arguments
    ---------
    text : str
        A README.

    Returns
    -------
    list of re.Match
        Groups ``results``, ``renderer`` and ``body``.

    Example
    -------
    >>> text = "a\\n<!-- table: r.json m.f -->\\n| x |\\n<!-- /table -->\\n"
    >>> [(m["results"], m["renderer"], m["body"]) for m in tables(text)]
    [('r.json', 'm.f', '| x |\\n')]
    """
    return list(MARKER.finditer(text))


def update(root=REPO, check=False):
    """Render every marked table; rewrite the READMEs unless ``check``.

    Arguments
    ---------
    root : str
        The repository.
    check : bool
        Only compare.

    Returns
    -------
    list of str
        ``README: results file`` for each table that differed.
    """
    differing = []
    for readme in readme_files(root):
        path = os.path.join(root, readme)
        with open(path, encoding="utf-8") as fin:
            text = fin.read()

        def replace(match, readme=readme):
            table = render(match["results"], match["renderer"], root)
            if table != match["body"]:
                differing.append(f"{readme}: {match['results']}")
            return match["open"] + table + match["close"]

        new = MARKER.sub(replace, text)
        if new != text and not check:
            with open(path, "w", encoding="utf-8") as fout:
                fout.write(new)
    return differing


def main(argv=None):
    """Command line: rewrite the tables, or ``--check`` them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a table differs")
    args = parser.parse_args(argv)
    differing = update(check=args.check)
    for entry in differing:
        verb = "differs from" if args.check else "rewritten from"
        readme, results = entry.split(": ")
        print(f"{readme}: table {verb} {results}")
    if args.check and differing:
        print("run `make tables` (python -m benchmarks.report) and commit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
