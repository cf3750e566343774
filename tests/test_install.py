"""Installs that fit where they land.

pyproject.toml declares compatible ranges and extras; constraints.txt holds the exact versions tested,
and `make setup` and environment.yml install with it. The Colab route is tested as it is used: a fresh
virtual environment that already holds its own torch, numpy, pandas and ipykernel (as Colab does) runs
the notebooks' install cell against a git repository of this checkout, nothing it held is replaced, and
notebook 00, copied alone into an empty folder, then runs at the ci scale in that environment.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Tooling a notebook server or a test run needs, never a library user nor a Colab kernel.
TOOLING = {"jupyterlab", "notebook", "nbmake", "pytest", "papermill", "jupytext", "nbclient"}
# What Colab already has and a live kernel must keep.
COLAB_OWN = {"torch", "numpy", "pandas", "ipykernel"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(group: str | None = None) -> list[Requirement]:
    """The core dependencies (group None) or one extra's, without tifkit's own extras."""
    project = PYPROJECT["project"]
    reqs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [r for r in map(Requirement, reqs) if _norm(r.name) != "tifkit"]


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert m, f"not an exact pin: {line!r}"
            out[_norm(m.group(1))] = m.group(2)
    return out


CONSTRAINTS = _pins((ROOT / "constraints.txt").read_text().splitlines())


def test_pyproject_declares_ranges_and_keeps_tooling_in_extras():
    core = _requirements()
    assert not [str(r) for r in core if any(s.operator in ("==", "===") for s in r.specifier)], "ranges, not pins"
    assert not {_norm(r.name) for r in core} & TOOLING, "test runners and notebook servers belong in extras"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"colab", "notebooks", "test", "gpu"} <= set(extras)
    colab = {_norm(r.name) for r in _requirements("colab")}
    assert not colab & (TOOLING | COLAB_OWN), "the colab extra must not bring tooling nor replace Colab's own packages"
    assert {"pytest", "nbmake"} <= {_norm(r.name) for r in _requirements("test")}
    assert {"jupyterlab", "papermill", "jupytext", "ipykernel"} <= {_norm(r.name) for r in _requirements("notebooks")}
    # the test extra includes the notebook tools, and the notebook extra what the notebooks import
    assert "tifkit[notebooks]" in extras["test"] and "tifkit[colab]" in extras["notebooks"]


def test_constraints_pin_every_dependency_inside_its_range():
    groups = [None, "colab", "notebooks", "test"]  # gpu (deepspeed) is untested here and stays unpinned
    reqs = [r for g in groups for r in _requirements(g)]
    assert {_norm(r.name) for r in reqs} == set(CONSTRAINTS), "constraints.txt pins exactly the direct dependencies"
    for r in reqs:
        assert r.specifier.contains(CONSTRAINTS[_norm(r.name)], prereleases=True), (r, CONSTRAINTS[_norm(r.name)])
    assert CONSTRAINTS["torch"] == "2.13.0"  # the CPU wheel on the development machines (README, GPU install)
    assert not {_norm(r.name) for r in _requirements("gpu")} & set(CONSTRAINTS)


def test_installed_versions_are_the_constraints():
    """`make setup` installed exactly what constraints.txt says (torch reports e.g. 2.13.0+cpu)."""
    wrong = {n: (version(n), v) for n, v in CONSTRAINTS.items() if Version(version(n)).public != Version(v).public}
    assert not wrong, f"installed != constraints.txt (rerun `make setup`): {wrong}"


def test_make_setup_and_environment_yml_install_with_the_constraints():
    make = (ROOT / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", make, re.M).group(1)
    assert "pyproject.toml" in stamp_rule and "$(CONSTRAINTS)" in stamp_rule
    assert re.search(r"^CONSTRAINTS := constraints.txt$", make, re.M)
    extras = re.search(r"^EXTRAS \?= (\S+)$", make, re.M).group(1).split(",")
    assert {"notebooks", "test"} <= set(extras)
    assert '-c $(CONSTRAINTS) -e ".[$(EXTRAS)]"' in make
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip == ["-c constraints.txt", f"-e .[{','.join(extras)}]"]


def test_design_card_packages_are_pinned():
    for pkg in ["jupyterlab", "papermill", "torch", "transformers", "trl", "datasets", "matplotlib", "seaborn",
                "scipy", "nbmake", "peft", "accelerate", "ipykernel", "pyyaml", "pytest"]:
        assert pkg in CONSTRAINTS, pkg


# ----------------------------------------------------------------------------------------------------
# Colab
# ----------------------------------------------------------------------------------------------------
def install_cell(name: str = "00_quickstart") -> str:
    """The source of a notebook's Colab install cell (the first code cell after the parameters)."""
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells[2].source


def cell_pip_argv(source: str, on_colab: bool = True) -> list[list[str]]:
    """Run an install cell with subprocess.run recorded instead of run: the commands it would run."""
    calls = []
    fake = types.SimpleNamespace(run=lambda argv, **kw: calls.append(list(argv)))
    saved = {k: sys.modules.get(k) for k in ("subprocess", "google.colab")}
    try:
        sys.modules["subprocess"] = fake
        if on_colab:
            sys.modules["google.colab"] = types.ModuleType("google.colab")
        else:
            sys.modules.pop("google.colab", None)
        exec(compile(source, "<install cell>", "exec"), {})
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return calls


def _freeze(py) -> dict[str, str]:
    """Every distribution in the environment of `py` (pip included) and its version."""
    out = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True,
                         text=True).stdout
    return {_norm(d["name"]): d["version"] for d in json.loads(out)}


# What the fresh environment holds before the install cell runs: other versions than constraints.txt,
# inside tifkit's ranges, as Colab's own would be; torch is the 2.13.0 CPU wheel (the one on disk here).
PREINSTALLED = {"torch": "2.13.0", "numpy": "2.0.2", "pandas": "2.2.3", "ipykernel": "6.29.5"}


@pytest.mark.slow
def test_colab_install_cell_in_a_fresh_environment_keeps_its_packages_and_runs_notebook_00(tmp_path):
    """About a minute on 2 idle cores with a warm pip cache (67 s alone on 2026-12-02): a venv with a
    recent pip (6 s), torch/numpy/pandas/ipykernel without byte-compiling (9 s; 32 s compiled), the
    install cell's pip command building tifkit from a git repository (9 s; 30 s compiled), then
    notebook 00 at the ci scale in that environment's kernel."""
    from nbclient import NotebookClient

    ranges = {_norm(r.name): r for r in _requirements()}
    for name, v in PREINSTALLED.items():
        assert name not in ranges or ranges[name].specifier.contains(v), (name, v)
        assert name == "torch" or v != CONSTRAINTS[name], f"{name} must differ from the tested pin to mean anything"

    # the repository as the install cell sees it: a git repository with the release tag the cell pins
    source = install_cell()
    ref = ast.literal_eval(re.search(r'^TIFKIT_REF = (".*")$', source, re.M).group(1))
    repo = tmp_path / "repo"
    repo.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, repo / part)
    for part in ("tifkit", "params"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=tifkit-test", "-c", "user.email=test@localhost", "-C", str(repo)]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"], ["tag", ref]):
        subprocess.run(git + cmd, check=True, capture_output=True)

    # a fresh environment (recent pip, as Colab has) holding its own versions
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--upgrade-deps", str(env_dir)], check=True, capture_output=True,
                   timeout=600)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pins = [f"{k}=={v}" for k, v in PREINSTALLED.items()]
    # --no-compile here and PIP_NO_COMPILE below (pip reads "0" there as "do not compile", its inverted
    # spelling for --no- options): pip skips byte-compiling torch's and transformers' thousands of files,
    # about 45 of this test's seconds on 2 cores; what is installed, and from where, is the same
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-compile", *pins], env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    before = _freeze(py)

    # the install cell itself, run on "Colab", with only the repository URL changed (as its comment says)
    line = 'TIFKIT_REPO = "https://github.com/tifkit/tifkit"'
    assert source.count(line) == 1
    local = source.replace(line, f'TIFKIT_REPO = "file://{repo}"')
    code = f"import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab'); exec({local!r})"
    r = subprocess.run([str(py), "-c", code], env={**env, "PIP_NO_COMPILE": "0"}, cwd=tmp_path, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _freeze(py)
    replaced = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    assert not replaced, f"the install cell replaced packages the environment had: {replaced}"
    assert "tifkit" in after and not TOOLING & set(after), sorted(TOOLING & set(after))

    # notebook 00, copied alone into an empty folder, at the ci scale in that environment's kernel
    work = tmp_path / "empty"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work)
    where = subprocess.run([str(py), "-c", "import tifkit; print(tifkit.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(env_dir)), where  # tifkit from the install, not from the checkout
    kernel_dir = tmp_path / "kernels" / "tifkit-colab-test"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tifkit colab test", "language": "python", "env": {"PYTHONPATH": ""}}))
    nb = nbformat.read(work / "00_quickstart.ipynb", as_version=4)
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "HF_HUB_OFFLINE", "TIFKIT_NOTEBOOK_SCALE")}
    os.environ.update({"JUPYTER_PATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "TIFKIT_NOTEBOOK_SCALE": "ci"})
    try:
        NotebookClient(nb, kernel_name="tifkit-colab-test", timeout=900,
                       resources={"metadata": {"path": str(work)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    from test_notebooks import output_noise

    assert not output_noise(nb), output_noise(nb)  # as a Colab user sees it: no warnings, no echoed paths
    summary = json.loads((work / "runs" / "nb-ci" / "figures" / "00_tiny_summary.json").read_text())
    assert summary["scale"] == "ci" and summary["conclusion"]
    assert sorted(p.name for p in work.iterdir()) == ["00_quickstart.ipynb", "runs"]
    assert _freeze(py) == after  # running the notebook installed nothing either
