"""Session fixtures shared by the test suite.

The session starts by checking the environment against
``requirements-lock.txt`` (``lobes.environment``): a broken one stops the
run with one line naming the package, before any test module imports torch.

The recipe rows (``tests/recipes/*.csv``) that the selected tests run
start in the background with the first test of ``tests/``, two at a time
(``NRSB_TEST_JOBS``), and the tests that wait for them run last: the other
tests run meanwhile, on one intra-op thread, so that the two cores are
shared by three single-threaded processes instead of being oversubscribed.
"""

import os
import sys

import pytest

from lobes.environment import check_environment  # the standard library only

# Keep compiled bytecode (in __pycache__/, which git ignores) even where
# PYTHONDONTWRITEBYTECODE is set: the suite starts about a hundred Python
# processes (recipe rows, command-line tests), each of which would otherwise
# compile torch, speechbrain and the rest from source again (about 2.5 s of
# CPU each). Set before the session's check imports them.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _jobs():
    """Recipe rows run at once in the background (``NRSB_TEST_JOBS``)."""
    return int(os.environ.get("NRSB_TEST_JOBS", "2"))


def pytest_sessionstart(session):
    """Stop at once, in one line, when the environment is not the lock's."""
    problem = check_environment()
    if problem:
        pytest.exit(problem, returncode=3)
    import torch  # only once the check has shown it loads

    # Tiny models gain nothing from a second thread, and two threads stall
    # (OpenMP spin-waits) whenever the recipe rows, or anything else, keep
    # the other core busy: 10x slower on a loaded 2-core machine.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory):
    """A cache folder for the tiny mini corpora, shared by the session.

    Set ``NRSB_TEST_CACHE`` to reuse corpora between local runs.
    """
    folder = os.environ.get("NRSB_TEST_CACHE") or str(
        tmp_path_factory.mktemp("mini_cache")
    )
    os.environ["NRSB_CACHE"] = folder
    return folder


#: Tests that take a recipe row by its name (``name``): the session starts
#: those rows in the background, two at a time, with its first test, and
#: runs these tests last.
ROW_TESTS = ("test_recipe_runs", "test_show_prints_the_runs_hyperparams")


def _is_row_test(item):
    return (getattr(item, "originalname", None) in ROW_TESTS
            and hasattr(item, "callspec"))


def pytest_collection_modifyitems(session, config, items):
    """Note the recipe rows that the selected tests will run, and move the
    tests that wait for them to the end (stable order otherwise)."""
    config.recipe_rows = sorted({
        item.callspec.params["name"] for item in items if _is_row_test(item)
    })
    if _jobs() >= 2:
        items[:] = ([item for item in items if not _is_row_test(item)]
                    + [item for item in items if _is_row_test(item)])


@pytest.fixture(scope="session")
def recipe_runner(request, tmp_path_factory, mini_cache):
    """Runs the rows of the recipe CSVs, each once per session."""
    from tests.recipe_runner import RecipeRunner  # imports torch

    runner = RecipeRunner(
        output_root=str(tmp_path_factory.mktemp("recipes")),
        cache_dir=mini_cache,
        ssl_folder=str(tmp_path_factory.mktemp("ssl_models")),
    )
    runner.prefetch(getattr(request.config, "recipe_rows", []),
                    jobs=_jobs())
    yield runner
    runner.close()


@pytest.fixture(scope="session", autouse=True)
def _recipe_rows_in_background(request):
    """Start the selected recipe rows with the session's first test."""
    if getattr(request.config, "recipe_rows", None) and _jobs() >= 2:
        request.getfixturevalue("recipe_runner")


@pytest.fixture(scope="session", autouse=True)
def _scratch_under_basetemp(tmp_path_factory):
    """Scratch folders that tests and doctests make with ``tempfile`` go
    under the session's base folder (pytest keeps the last three
    sessions'), not straight into the system's, where a run of the suite
    left over a hundred. Set with the session's first test (``tests/``
    runs first), kept until its end."""
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = before


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, which a busy machine stalls:
    a module that uses this runs on one intra-op thread (the session's
    default; this keeps it so for a module that asks)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
