"""The notebooks: committed clean (no outputs, one `parameters` cell papermill can read), and each
executes end to end at its default CI scale through the papermill runner (tifkit.notebooks).

The executions share one run root (a session temp folder), so SFT and warm-up models trained by one
notebook are reused by the next, as in a real batch; about 2 minutes for all six on 2 cores.
"""
import json
import warnings
from pathlib import Path

import nbformat
import pytest

from tifkit import notebooks as runner

ROOT = Path(__file__).resolve().parents[1]
NAMES = runner.available()
COMMON = {"scale", "params_file", "overrides", "seeds", "run_root", "figures_dir"}


def test_six_notebooks():
    assert [n.split("_", 1)[0] for n in NAMES] == ["00", "01", "02", "03", "04", "05"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_and_parameterized(name, caplog):
    import papermill as pm

    path = ROOT / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] <= 2, "one `parameters` cell near the top"
    intro = nb.cells[0]
    assert intro.cell_type == "markdown" and "Hardware" in intro.source
    assert name == "00_quickstart" or "Claim" in intro.source  # the claim(s) it tests
    with caplog.at_level("WARNING"):
        declared = set(pm.inspect_notebook(str(path)))
    assert "Unable to parse" not in caplog.text  # papermill reads every parameter (no '=' in comments)
    assert COMMON <= declared
    assert nb.cells[-1].cell_type == "code" and "conclu" in "".join(c.source for c in nb.cells[-3:]).lower()


def test_runner_resolves_names_and_rejects_unknown(capsys):
    assert runner.resolve(["02", "03_fusion.ipynb"]) == ["02_sf_correlation", "03_fusion"]
    assert runner.resolve(None) == NAMES
    assert runner.main(["--scale", "ci", "99"]) == 2
    assert "No notebook named '99'" in capsys.readouterr().err


@pytest.fixture(scope="session")
def nb_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebooks")
    return {"out": base / "out", "figures": base / "figures", "runs": base / "runs"}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_at_ci_scale(name, nb_run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out,) = runner.run_notebooks([name], out_dir=nb_run["out"], scale="ci", figures_dir=str(nb_run["figures"]),
                                      parameters={"run_root": str(nb_run["runs"])}, cwd=ROOT, timeout=600)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    prefix = name.split("_", 1)[0]
    summary = json.loads(next(nb_run["figures"].glob(f"{prefix}_*summary.json")).read_text())
    assert summary["notebook"] == name and summary["scale"] == "ci"
    texts = [v for k, v in summary.items() if k.startswith("claim") or k == "conclusion"]
    assert texts and all(isinstance(t, str) and t for t in texts)
    pngs = list(nb_run["figures"].glob(f"{prefix}_*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    # the conclusion is displayed in the executed notebook
    shown = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
    assert texts[0][:40] in shown
    assert (nb_run["out"] / "runtimes.csv").exists()


def test_committed_notebooks_match_their_generator(tmp_path):
    """notebooks/build_notebooks.py is the source of the notebooks: the committed files are its output."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "notebooks" / "build_notebooks.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        assert (tmp_path / nb.name).read_text() == nb.read_text(), f"{nb.name}: regenerate with build_notebooks.py"
