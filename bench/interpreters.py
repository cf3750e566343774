"""How many Python interpreters a command starts, of which kind, what each costs in CPU, and which
installed files they import: run the command with bench/interpreters on PYTHONPATH and a record folder
in TIFKIT_PROCLOG, then this script on the folder. For `make test` (docs/PERFORMANCE.md, "make test:
where its time goes"):

    rm -rf runs/proclog
    TIFKIT_PROCLOG=$PWD/runs/proclog PYTHONPATH=$PWD/bench/interpreters TIFKIT_NOTEBOOK_SCALE=ci \\
        .venv/bin/python -m pytest -n logical --dist worksteal --nbmake tests notebooks
    .venv/bin/python bench/interpreters.py runs/proclog

Both paths absolute: kernels and subprocesses start in other folders (a relative PYTHONPATH would
not find the recorder there, and they would go uncounted).

Kinds: the pytest controller, its xdist workers, notebook kernels, spawned pool workers (multiprocessing
names them SpawnProcess-N), `python -m tifkit` subprocesses, accelerate's launcher, other. A process
killed by a signal records nothing. The installed-files lines say what a set-up step that byte-compiles
only the imported files would compile, against what `make setup` compiles.
"""
from __future__ import annotations

import json
import sys
import sysconfig
from collections import defaultdict
from pathlib import Path


def kind(rec: dict, controllers: set = frozenset()) -> str:
    """The kind of one recorded interpreter; `controllers`: the pids of the pytest controllers (the
    parents of xdist's workers, which execnet starts as `python -c`)."""
    first = Path(rec["argv"][0]) if rec["argv"] else Path()
    if rec["name"].startswith(("SpawnProcess", "ForkProcess", "ForkServerProcess")):
        return "pool worker"
    if first.name == "ipykernel_launcher.py":
        return "notebook kernel"
    if first.parent.name == "pytest" or first.name in ("pytest", "py.test"):
        return "pytest controller"
    if rec["argv"] == ["-c"]:
        return "xdist worker" if rec["ppid"] in controllers else "python -c"
    if first.parent.name == "tifkit":
        return "tifkit command"
    if first.name == "accelerate":
        return "accelerate launcher"
    return "other"


def main(folder: str) -> None:
    recs = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    controllers = {r["pid"] for r in recs if kind(r) == "pytest controller"}
    by = defaultdict(list)
    for r in recs:
        by[kind(r, controllers)].append(r)
    print(f"{len(recs)} interpreters, {sum(r['cpu'] for r in recs):.0f} CPU s")
    print(f"{'kind':<20} {'n':>3} {'CPU s':>7} {'median CPU s':>13} {'median files':>13}")
    for k, rs in sorted(by.items(), key=lambda kv: -sum(r["cpu"] for r in kv[1])):
        cpus = sorted(r["cpu"] for r in rs)
        files = sorted(len(r["files"]) for r in rs)
        print(f"{k:<20} {len(rs):>3} {sum(cpus):>7.1f} {cpus[len(cpus) // 2]:>13.1f} {files[len(files) // 2]:>13}")
    site = sysconfig.get_paths()["purelib"]
    used = {f for r in recs for f in r["files"] if f.startswith(site) and f.endswith(".py")}
    installed = [p for p in Path(site).rglob("*.py") if "/tests/" not in str(p)]
    size = lambda paths: sum(Path(p).stat().st_size for p in paths if Path(p).exists()) / 1e6  # noqa: E731
    print(f"installed .py files imported by any interpreter: {len(used)} ({size(used):.0f} MB of source)")
    print(f"installed .py files make setup compiles (tests folders left out): {len(installed)} "
          f"({size(installed):.0f} MB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/proclog")
