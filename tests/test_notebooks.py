"""The notebooks: jupytext sources in sync with the committed .ipynb (outputs stripped), one
`parameters` cell papermill can read, the tutorial furniture (Colab badge and install cell, paper link,
hardware note, a conclusion) and the papermill runner. The Colab install cell is checked here for what
it would run; tests/test_install.py runs it in a fresh environment and then notebook 00 from an empty folder.

Executing every notebook is nbmake's job (`make test` runs `pytest --nbmake notebooks` at the ci scale).
"""
import json
import re
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
import test_install

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
    assert install.source == test_install.install_cell(), "every notebook has the same Colab install cell"
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


def test_a_notebook_reads_the_batch_only_at_full_scale_on_the_default_parameters(tmp_path, monkeypatch):
    """`NotebookRun.batch_difference` gives the committed batch's paired difference (as
    tifkit.results.batch_difference reads it) to a full-scale run of params/tiny.yaml without
    overrides, and None to any other run, whose numbers the batch's would not belong beside."""
    from tifkit import results as RS

    monkeypatch.setattr(runner, "notebook_setup", lambda *a, **k: None)  # no chdir, no global settings
    root = f"run.root={tmp_path / 'runs'}"
    full = runner.start("01_x", "full", "tiny.yaml", [], figures_dir=str(tmp_path))
    assert full.default_params
    want = RS.batch_difference("tif", "top-if", full.p.run.name)
    assert want is not None and full.batch_difference("tif", "top-if") == want
    assert not runner.start("01_x", "full", "tiny.yaml", [root], figures_dir=str(tmp_path)).default_params
    assert runner.start("01_x", "full", "tiny.yaml", [root], figures_dir=str(tmp_path)).batch_difference(
        "tif", "top-if") is None
    assert runner.start("01_x", "ci", "tiny.yaml", [], figures_dir=str(tmp_path)).batch_difference(
        "tif", "top-if") is None
    assert not runner.start("01_x", "full", "tiny-qwen.yaml", [], figures_dir=str(tmp_path)).default_params
    # the batch's score diagnostics as an aggregated score report: claim 4 at the batch's seeds (notebook 02),
    # each correlation's mean and seed count as the committed CSV holds them (an independent read here)
    import pandas as pd

    from tifkit import conclusions as C
    from tifkit.report import report_value

    diag = full.batch_diagnostics()
    csv = pd.read_csv(RS.REPO / "figures" / f"{full.p.run.name}_score_diagnostics.csv")
    row = csv[(csv.section == "correlation") & (csv.name == "irm") & csv.statistic.str.startswith("pearson")].iloc[0]
    assert report_value(diag, "correlation", "irm", "pearson") == row["mean"]
    assert int(diag.n_runs.max()) == int(csv["count"].max()) >= 2
    assert f"means over {int(csv['count'].max())} seeds" in C.conclude_correlation(diag)
    assert runner.start("02_x", "ci", "tiny.yaml", [], figures_dir=str(tmp_path)).batch_diagnostics() is None


@pytest.mark.slow
def test_papermill_runner_injects_parameters(tmp_path, capfd):
    """The batch route (`tifkit notebooks`): papermill overrides the parameters cell. The run root is
    the one nbmake's run of the notebooks uses (notebooks/runs/nb-ci), so the stages it trains are
    trained once per test run, whichever of the two runs first (the stage locks make them wait). The
    notebook is 03, the shortest one that trains nothing of its own (the seed's score table is all it
    reads): the route is the same for every notebook, and 00 runs twice elsewhere (nbmake, the Colab test)."""
    shared_root = ROOT / "notebooks" / runner.CI_ROOT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out,) = runner.run_notebooks(["03"], out_dir=tmp_path / "out", scale="ci", figures_dir=str(tmp_path / "fig"),
                                      parameters={"run_root": str(shared_root)}, cwd=ROOT, timeout=600)
    nb = nbformat.read(out, as_version=4)
    assert out.name == "03_fusion.ipynb"
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not output_noise(nb), output_noise(nb)
    summary = json.loads((tmp_path / "fig" / "03_tiny_summary.json").read_text())
    assert summary["notebook"] == "03_fusion" and summary["scale"] == "ci" and summary["claim5"]
    assert "CI scale" in summary["claim5"]
    injected = [c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f"run_root = {json.dumps(str(shared_root))}" in injected[0], injected
    assert shared_root.is_dir() and (tmp_path / "out" / "runtimes.csv").exists()
    # what a user's terminal shows: the runner's lines, no kernel warning (the kernel talks over IPC where
    # this machine's runtime folder allows it, as on the development machine and CI)
    err = capfd.readouterr().err
    if runner.kernel_config():
        assert "[IPKernelApp]" not in err and "without encryption" not in err, err[-2000:]


def output_noise(nb) -> list[str]:
    """What a reader should not see in an executed notebook: echoed paths (a figure helper's return
    value), warnings (library FutureWarnings, TqdmWarning) and training-log floods (more than 20 lines
    in one output)."""
    bad = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            text = o.get("text") or o.get("data", {}).get("text/plain") or ""
            text = "".join(text) if isinstance(text, list) else text
            if "PosixPath(" in text or "Warning" in text or text.count("\n") > 20 and o.get("name") == "stderr":
                bad.append(text[:300])
    return bad


def test_the_noise_check_sees_noise():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('figures/x.png')"}),
        nbformat.v4.new_output("stream", name="stderr", text="FutureWarning: x is deprecated"),
        nbformat.v4.new_output("stream", name="stdout", text="a table\n" * 30)])])
    assert len(output_noise(nb)) == 2


def test_kernels_use_ipc_sockets_only_where_their_paths_fit(monkeypatch):
    """IPC where the OS has it and the socket files' paths fit its limit; TCP otherwise."""
    import os

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", "/tmp/rt")
    short = runner.kernel_config()
    assert short == ({"KernelManager": {"transport": "ipc"}} if os.name == "posix" else {})
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", "/" + "d" * 80)
    assert runner.kernel_config() == {}


def test_colab_install_cell_installs_one_release_with_the_colab_extra_and_nothing_else():
    """What the install cell runs on Colab: one pip command, tifkit with its `colab` extra at the release
    tag of this version from the published repository; no package Colab has (torch, numpy, pandas,
    ipykernel) and no notebook tooling named or pinned. Off Colab it runs nothing."""
    source = test_install.install_cell()
    (argv,) = test_install.cell_pip_argv(source, on_colab=True)
    tag = "v" + test_install.PYPROJECT["project"]["version"]
    assert argv == [sys.executable, "-m", "pip", "install", "-q", f"tifkit[colab] @ git+{runner.REPO_URL}@{tag}"]
    assert test_install.cell_pip_argv(source, on_colab=False) == []
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(torch|numpy|pandas|ipykernel|jupyterlab|nbmake|pytest|papermill)\b", code)
    # what to change when the repository or the release differs is said in the cell
    assert re.search(r"^TIFKIT_REPO = ", source, re.M) and re.search(r"^TIFKIT_REF = ", source, re.M)
    assert "TIFKIT_REPO" in source.split("import", 1)[0] and "TIFKIT_REF" in source.split("import", 1)[0]
