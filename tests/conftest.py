"""Session fixtures shared by the test suite.

The session starts by checking the environment against
``requirements-lock.txt`` (``lobes.environment``): a broken one stops the
run with one line naming the package, before any test module imports torch.
"""

import os

import pytest

from lobes.environment import check_environment


def pytest_sessionstart(session):
    """Stop at once, in one line, when the environment is not the lock's."""
    problem = check_environment()
    if problem:
        pytest.exit(problem, returncode=3)
    import torch  # only once the check has shown it loads

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
#: those rows in the background, two at a time, as soon as one is needed.
ROW_TESTS = ("test_recipe_runs", "test_show_prints_the_runs_hyperparams")


def pytest_collection_modifyitems(session, config, items):
    """Note the recipe rows that the selected tests will run."""
    config.recipe_rows = sorted({
        item.callspec.params["name"] for item in items
        if getattr(item, "originalname", None) in ROW_TESTS
        and hasattr(item, "callspec")
    })


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
                    jobs=int(os.environ.get("NRSB_TEST_JOBS", "2")))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, which a busy machine stalls:
    a module that uses this runs on one intra-op thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
