#!/usr/bin/env bash
# Where `make setup`'s time goes: the downloads, pip's install with and without byte-compiling, and
# compileall over the installed files on every core (all of them, then all but the libraries' test
# suites, as make setup does). Each install goes into a new virtual environment under a temporary
# folder (removed at the end), from the same downloaded wheels, so the network is timed once and apart.
# Prints wall and CPU seconds (user + system, the command and its children) per phase: on a shared
# machine the wall time of the same step varies by a third from run to run, its CPU time much less.
# docs/PERFORMANCE.md, "make setup", records a run.
#
#   bash bench/bench_setup.sh          # from the repository root; PY (default python3) makes the venvs
#
# It needs the package index (the downloads) and about 5 GB of temporary disk; in the repository it
# writes only what `make setup` writes there too (setuptools' tifkit.egg-info, git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

timed() {  # what, command...: runs the command (its output dropped) and prints its times; stops the script
  # when it fails, except with ANY_EXIT=1 (compileall: its errors are files pip skips too)
  local what=$1; shift
  "$PY" - "$what" "$@" <<'EOF'
import os, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if r.returncode and os.environ.get("ANY_EXIT") != "1":
    sys.exit(f"{sys.argv[1]}: exit status {r.returncode}\n{r.stderr[-2000:]}")
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{sys.argv[1]:<58} {time.perf_counter() - t:6.1f} s wall {u.ru_utime + u.ru_stime:6.1f} s CPU")
EOF
}
venv() { "$PY" -m venv "$work/$1" && "$work/$1/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null; }
site() { "$work/$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
count() { find "$(site "$1")" -name '*.pyc' | wc -l; }
install() {  # what, venv, extra pip options...
  local what=$1 v=$2; shift 2
  timed "$what" "$work/$v/bin/python" -m pip install --quiet "$@" --no-index --find-links "$work/wheels" \
    -c constraints.txt -e ".[notebooks,test]"
}

venv a
timed "download every wheel (pip download)" "$work/a/bin/python" -m pip download --quiet -d "$work/wheels" \
  -c constraints.txt ".[notebooks,test]"
install "pip install, compiling (pip's default)" a

venv b
install "pip install --no-compile" b --no-compile
ANY_EXIT=1 timed "compileall -j 0 (every core), every installed file" "$work/b/bin/python" -m compileall -q -j 0 "$(site b)"
echo "compiled files: pip $(count a), compileall $(count b); cores: $("$PY" -c 'import os; print(os.cpu_count())')"
find "$(site b)" -name __pycache__ -type d -prune -exec rm -rf {} +
ANY_EXIT=1 timed "compileall -j 0 -x /tests/ (as make setup)" "$work/b/bin/python" -m compileall -q -j 0 -x /tests/ "$(site b)"
echo "compiled files without the libraries' test suites: $(count b)"
