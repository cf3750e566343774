"""Where `make test`'s time goes: a pytest plugin that records, for every test, the xdist worker that ran
it, its start and end, and the CPU seconds it spent in the worker itself and in the child processes it
waited for (notebook kernels, spawned pool workers, CLI and accelerate subprocesses); then, run as a
script, a summary of the record. A benchmark, not a test: docs/PERFORMANCE.md, "make test", records a run.

    rm -f runs/test-timeline.jsonl
    PYTHONPATH=bench TIFKIT_NOTEBOOK_SCALE=ci .venv/bin/python -m pytest -p pytest_timeline \\
        -n logical --dist worksteal --nbmake tests notebooks        # the options of `make test`
    .venv/bin/python bench/pytest_timeline.py runs/test-timeline.jsonl

TIFKIT_TIMELINE names another record file. Child CPU counts only children that ended and were waited
for during the test (resource.RUSAGE_CHILDREN); a kernel shut down after its test counts with it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

RECORD = Path(os.environ.get("TIFKIT_TIMELINE", "runs/test-timeline.jsonl"))


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        with RECORD.open("a") as f:
            f.write(json.dumps({"event": "start", "t": time.time()}) + "\n")


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with RECORD.open("a") as f:
            f.write(json.dumps({"event": "end", "t": time.time()}) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    t0, (s0, c0) = time.time(), _cpu()
    yield
    t1, (s1, c1) = time.time(), _cpu()
    row = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "test": item.nodeid, "t0": t0, "t1": t1,
           "cpu_self": s1 - s0, "cpu_children": c1 - c0}
    with RECORD.open("a") as f:  # one short line per append: the workers' lines do not interleave
        f.write(json.dumps(row) + "\n")


def summarize(path: Path, top: int = 15) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    marks = {r["event"]: r["t"] for r in rows if "event" in r}
    tests = [r for r in rows if "test" in r]
    if not tests:
        raise SystemExit(f"{path}: no test recorded")
    start = marks.get("start", min(r["t0"] for r in tests))
    end = marks.get("end", max(r["t1"] for r in tests))
    out = [f"session {end - start:.1f} s wall; {len(tests)} tests; CPU {sum(r['cpu_self'] for r in tests):.0f} s "
           f"in the workers, {sum(r['cpu_children'] for r in tests):.0f} s in their child processes"]
    by_worker = defaultdict(list)
    for r in tests:
        by_worker[r["worker"]].append(r)
    for w, rs in sorted(by_worker.items()):
        first, last = min(r["t0"] for r in rs), max(r["t1"] for r in rs)
        busy = sum(r["t1"] - r["t0"] for r in rs)
        out.append(f"  {w}: first test at {first - start:.1f} s, last ends at {last - start:.1f} s, "
                   f"{len(rs)} tests, busy {busy:.1f} s")
    groups = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for r in tests:
        g = groups[r["test"].split("[")[0]]  # a parametrized test's cases together
        g[0] += r["t1"] - r["t0"]
        g[1] += r["cpu_self"]
        g[2] += r["cpu_children"]
        g[3] += 1
    out.append(f"the {top} tests with the most CPU (cases of a parametrized test together):")
    out.append(f"  {'wall s':>7} {'self s':>7} {'child s':>7} {'n':>3}  test")
    for name, (wall, own, kids, n) in sorted(groups.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        out.append(f"  {wall:7.1f} {own:7.1f} {kids:7.1f} {n:3d}  {name}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else RECORD)))
