"""The notebooks: jupytext sources in sync with the committed .ipynb (outputs stripped), one
`parameters` cell papermill can read, the tutorial furniture (Colab badge and install cell, paper link,
hardware note, a conclusion), the papermill runner, and the Colab route: a notebook copied alone into
an empty folder runs against tifkit installed from a wheel.

Executing every notebook is nbmake's job (`make test` runs `pytest --nbmake notebooks` at the ci scale).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import nbformat
import pytest

from tifkit import notebooks as runner

ROOT = Path(__file__).resolve().parents[1]
NAMES = runner.available()
COMMON = {"scale", "params_file", "overrides", "seeds", "run_root", "figures_dir"}


def test_notebooks_are_numbered_and_have_sources():
    assert [n.split("_", 1)[0] for n in NAMES] == [f"{i:02d}" for i in range(len(NAMES))]
    assert len(NAMES) >= 6
    for n in NAMES:
        assert (ROOT / "notebooks" / f"{n}.py").is_file(), f"{n}.ipynb has no jupytext source {n}.py"


def test_ipynb_in_sync_with_jupytext_sources():
    stale = runner.sync_notebooks(check=True)
    assert not stale, f"run `make notebooks` (python -m tifkit.notebooks --sync): {stale} differ from their .py"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_tutorial_and_parameterized(name, caplog):
    import papermill as pm

    path = ROOT / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1], "one `parameters` cell, right after the introduction"
    intro = nb.cells[0]
    assert intro.cell_type == "markdown"
    badge = f"https://colab.research.google.com/github/{runner.REPO}/blob/main/notebooks/{name}.ipynb"
    assert badge in intro.source, "Open-in-Colab badge pointing at this notebook"
    assert "arxiv.org/abs/2510.13212" in intro.source and "Hardware" in intro.source
    assert name == "00_quickstart" or re.search(r"[Cc]laim", intro.source)  # the claim(s) it tests
    install = nb.cells[2]
    assert install.cell_type == "code" and "google.colab" in install.source and runner.REPO in install.source
    with caplog.at_level("WARNING"):
        declared = set(pm.inspect_notebook(str(path)))
    assert "Unable to parse" not in caplog.text  # papermill reads every parameter (no '=' in comments)
    assert COMMON <= declared
    assert "N.start(" in "".join(c.source for c in code[:4])
    # a tutorial: explanation between the computations, and a conclusion at the end
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(md) >= 5 and sum(len(c.source) for c in md) > 2500
    assert "How to read it" in "".join(c.source for c in md)
    assert "nb.finish(" in code[-1].source and "conclu" in "".join(c.source for c in nb.cells[-3:]).lower()


def test_runner_resolves_names_and_rejects_unknown(capsys):
    assert runner.resolve(["02", "03_fusion.ipynb"]) == ["02_sf_correlation", "03_fusion"]
    assert runner.resolve(None) == NAMES
    assert runner.main(["--scale", "ci", "99"]) == 2
    assert "No notebook named '99'" in capsys.readouterr().err


def test_scale_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(runner.SCALE_ENV, raising=False)
    assert runner.resolve_scale() == "default"
    monkeypatch.setenv(runner.SCALE_ENV, "ci")
    assert runner.resolve_scale() == "ci" and runner.resolve_scale("full") == "full"
    monkeypatch.setenv(runner.SCALE_ENV, "huge")
    with pytest.raises(Exception, match="scale must be one of"):
        runner.resolve_scale()


@pytest.mark.slow
def test_papermill_runner_injects_parameters(tmp_path):
    """The batch route (`tifkit notebooks`): papermill overrides the parameters cell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out,) = runner.run_notebooks(["00"], out_dir=tmp_path / "out", scale="ci", figures_dir=str(tmp_path / "fig"),
                                      parameters={"run_root": str(tmp_path / "runs")}, cwd=ROOT, timeout=600)
    nb = nbformat.read(out, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    summary = json.loads((tmp_path / "fig" / "00_tiny_summary.json").read_text())
    assert summary["notebook"] == "00_quickstart" and summary["scale"] == "ci" and summary["conclusion"]
    assert "CI scale" in summary["conclusion"]
    assert (tmp_path / "runs").is_dir() and (tmp_path / "out" / "runtimes.csv").exists()


@pytest.mark.slow
def test_notebook_alone_in_an_empty_folder_with_tifkit_from_a_wheel(tmp_path):
    """The Colab route: tifkit installed from a wheel (not the source tree), one notebook copied alone
    into an empty folder, run there by papermill: params files come from the package, nothing from
    the working directory. The fresh environment reuses this one's dependencies through a .pth file
    (no downloads) but gets tifkit only from the wheel."""
    src = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the checkout
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "tifkit", "params"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, src / part)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("tifkit-*.whl")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "empty"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work)
    code = ("import tifkit, papermill as pm; assert 'site-packages' in tifkit.__file__ and 'venv' in tifkit.__file__, "
            "tifkit.__file__; pm.execute_notebook('00_quickstart.ipynb', 'out.ipynb', parameters={'scale': 'ci'}, "
            "kernel_name='tifkit-wheel-test', progress_bar=False)")
    kernel_dir = tmp_path / "kernels" / "tifkit-wheel-test"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tifkit wheel test", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update({"JUPYTER_PATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "TIFKIT_NOTEBOOK_SCALE": "ci"})
    r = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = nbformat.read(work / "out.ipynb", as_version=4)
    assert not [o for c in out.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert (work / "runs" / "nb-ci" / "figures" / "00_tiny_summary.json").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["00_quickstart.ipynb", "out.ipynb", "runs"]
