"""The conda environment and pyproject.toml pin the same packages; the installed ones match."""
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_matches_pyproject():
    py = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == py
    assert "-e ." in pip


def test_design_card_packages_are_pinned_and_installed():
    py = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for pkg in ["jupyterlab", "papermill", "torch", "transformers", "trl", "datasets", "matplotlib", "seaborn",
                "scipy", "nbmake", "peft", "accelerate", "ipykernel", "pyyaml", "pytest"]:
        assert pkg in py, pkg
        assert version(pkg).split("+")[0] == py[pkg], pkg  # torch reports e.g. 2.13.0+cpu
