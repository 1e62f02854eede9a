"""The notebooks' install cell (the same in all three), ``make wheel``, the one repository constant, and the
GPU metadata every notebook gives Colab."""

import json
import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
import repository  # noqa: E402


def cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def install_cell(nb: Path) -> str:
    found = [src for c in cells(nb) if c["cell_type"] == "code" and 'find_spec("seglib")' in (src := "".join(c["source"]))]
    assert len(found) == 1, f"{nb.name}: one install cell expected"
    return found[0]


def test_install_cell_is_the_same_everywhere_and_needs_no_seglib():
    code = {install_cell(nb) for nb in NOTEBOOKS}
    assert len(NOTEBOOKS) == 3 and len(code) == 1
    cell = code.pop()
    assert not re.search(r"^\s*(import|from) seglib", cell, re.M) and "check=True" not in cell
    for nb in NOTEBOOKS:  # the install cell comes before any seglib import
        order = ["".join(c["source"]) for c in cells(nb) if c["cell_type"] == "code"]
        first_seglib = next(i for i, s in enumerate(order) if re.search(r"^\s*(import|from) seglib", s, re.M))
        assert order.index(cell) < first_seglib, nb.name


def test_one_repository_constant_for_notebooks_badges_and_readme(tmp_path):
    assert repository.problems() == []
    for rel in repository.FILES:  # set it elsewhere in a copy: everything follows
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    repository.set_repository("https://github.com/someone/seglib-fork", tmp_path)
    assert repository.repository(tmp_path) == ("someone", "seglib-fork") and repository.problems(tmp_path) == []
    assert "github.com/seglib/seglib" not in (tmp_path / "notebooks" / NOTEBOOKS[0].name).read_text()
    with pytest.raises(ValueError, match="not a GitHub repository"):
        repository.set_repository("seglib", tmp_path)


def test_every_notebook_asks_colab_for_a_gpu_and_warns_without_one():
    for nb in NOTEBOOKS:
        meta = json.loads(nb.read_text())["metadata"]
        assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"], nb.name
        assert any("gpu_warning()" in "".join(c["source"]) for c in cells(nb)), nb.name


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``make wheel`` into a temporary folder (the venv is taken as it is)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(["make", "-o", ".venv/.seglib-installed", "wheel", f"WHEEL_DIR={out}", f"PY={sys.executable}"],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("seglib-*.whl")
    return whl


def test_make_wheel_holds_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for sub in ("losses/registry.py", "metrics/registry.py", "models/registry.py", "train/state.py", "data/sources.py",
                "runtime.py", "nbrun.py", "integrations/catalyst_compat.py"):
        assert f"seglib/{sub}" in names, sub
    assert not any(n.startswith(("tests/", "notebooks/")) for n in names)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A fresh virtual environment without seglib (pip from the base interpreter, or ensurepip)."""
    d = tmp_path_factory.mktemp("venv")
    venv.create(d, system_site_packages=True, with_pip=False)
    py = d / "bin" / "python"
    if subprocess.run([py, "-c", "import pip"], capture_output=True).returncode:
        subprocess.run([py, "-m", "ensurepip", "-q"], check=True)
    assert subprocess.run([py, "-c", "import seglib"], capture_output=True, cwd=d).returncode == 1
    return py


def run_cell(python: Path, source: str, drive: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The install cell with ``SEGLIB_SOURCE = source`` in ``python``, Drive at ``drive``; offline, no deps."""
    code = f"SEGLIB_SOURCE = {source!r}\n" + install_cell(NOTEBOOKS[0])
    env = {**os.environ, "SEGLIB_DRIVE_MOUNT": str(drive), "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""}
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_install_cell_takes_the_wheel_on_drive(bare_python, wheel, tmp_path):
    folder = tmp_path / "drive" / "MyDrive" / "seglib"
    folder.mkdir(parents=True)
    (folder / wheel.name).write_bytes(wheel.read_bytes())
    r = run_cell(bare_python, "/nowhere/seglib", tmp_path / "drive", tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"installed seglib from {folder / wheel.name}" in r.stdout
    show = subprocess.run([bare_python, "-m", "pip", "show", "-f", "seglib"], capture_output=True, text=True)
    assert "Version: 0.1.0" in show.stdout and "seglib/losses/registry.py" in show.stdout
    r = run_cell(bare_python, "/nowhere/seglib", tmp_path / "drive", tmp_path)  # installed now: nothing to do
    assert r.returncode == 0 and r.stdout == ""


def test_install_cell_failure_says_what_was_tried_and_the_fix(tmp_path):
    # seglib is not importable from tmp_path with the base interpreter (no venv, no PYTHONPATH)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    r = run_cell(base, "git+file:///nowhere/seglib", tmp_path / "drive", tmp_path)
    assert r.returncode == 1 and "CalledProcessError" not in r.stderr
    err = r.stderr
    assert "seglib could not be installed. Tried:" in err
    assert f"{tmp_path / 'drive' / 'MyDrive' / 'seglib'}: no seglib-*.whl and no repository" in err
    assert "git+file:///nowhere/seglib: pip failed" in err
    assert "make wheel" in err and "MyDrive/seglib/" in err and "set SEGLIB_SOURCE" in err


def test_install_cell_does_nothing_where_seglib_is_installed(tmp_path):
    r = run_cell(Path(sys.executable), "/nowhere/seglib", tmp_path / "drive", tmp_path)
    assert r.returncode == 0 and r.stdout == "" and not (tmp_path / "drive").exists()
