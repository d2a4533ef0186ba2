"""The environment is the lock, and a broken one is named in one line."""

import subprocess
import sys

from lobes import environment


def test_lock_pins_torch_and_torchaudio_of_one_release():
    pins = environment.read_lock()
    assert pins["torch"] == pins["torchaudio"]
    assert all("*" not in version for version in pins.values())


def test_installed_packages_are_exactly_the_lock():
    pins = environment.read_lock()
    installed = environment.installed_versions()
    assert environment.lock_mismatches(pins, installed) == []


def test_every_direct_requirement_is_locked():
    pins = environment.read_lock()
    names = []
    for line in (environment.LOCK_FILE.parent / "requirements.txt").open():
        line = line.split("#")[0].strip()
        if line:
            name = line.split(";")[0]
            for sep in ("==", ">=", "<=", "~=", ">", "<", "["):
                name = name.split(sep)[0]
            names.append(environment._canonical(name.strip()))
    assert names and [n for n in names if n not in pins] == []


def test_a_drifted_environment_stops_with_one_line(tmp_path):
    pins = environment.read_lock()
    drifted = tmp_path / "requirements-lock.txt"
    drifted.write_text(
        "".join(
            f"{name}=={'0.0.1' if name == 'torchaudio' else version}\n"
            for name, version in pins.items()
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "lobes.environment", str(drifted)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(
        "environment differs from requirements-lock.txt: torchaudio "
    )
    assert "the lock pins 0.0.1" in lines[0] and "make clean env" in lines[0]


def test_a_module_that_does_not_load_is_named():
    line = environment.import_failure(["json", "torch", "not_installed_x"])
    assert line.startswith("not_installed_x does not import")
