"""Every recipe listed in tests/recipes/*.csv runs with its debug flags."""

import pytest

from tests.recipe_runner import load_rows, row_id

ROWS = [row_id(row) for row in load_rows()]


@pytest.mark.recipe
@pytest.mark.parametrize("name", ROWS)
def test_recipe_runs(recipe_runner, name):
    ok, message = recipe_runner.run(name)
    assert ok, message
    print(f"{name}: {message}")
