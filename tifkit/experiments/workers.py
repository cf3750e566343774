"""Worker processes for the notebooks' studies: spawned, one torch thread each, quiet as a notebook."""
from __future__ import annotations

import dataclasses


# ------------------------------------------------------------------------------------------------
# Worker processes for the notebooks' multi-family studies (claims 1 and 6). The pattern is
# tifkit.workers.pool_map's: spawned processes, one torch thread each, a task
# per independent unit of work, every task deterministic on its own and cached through the
# pipeline's stages (file locks make two tasks that need the same stage wait for each other).

def _init_quiet_worker() -> None:
    """Worker set-up: one torch thread (tifkit.workers.init_worker), libraries quiet as in a notebook
    (no per-stage progress bars or warnings from transformers, datasets, TRL on the kernel's stderr)."""
    from tifkit.notebooks import notebook_setup
    from tifkit.workers import init_worker

    notebook_setup(threads=1, chdir=False)
    init_worker()


def _pool_map(tasks: dict, workers: int, desc: str, show_progress: bool = True, then=None) -> dict:
    """tifkit.workers.pool_map with workers as quiet as a notebook (`_init_quiet_worker`): their stage
    messages are silenced, so one bar counting the tasks stands for them whatever `show_progress` (which
    the stages inside the workers follow) says."""
    from tifkit.workers import pool_map

    return pool_map(tasks, workers, desc, True, then, initializer=_init_quiet_worker)


def _quiet(p):
    return dataclasses.replace(p, run=dataclasses.replace(p.run, show_progress=False))


def _workers(p, n_tasks: int, workers: int | None) -> int:
    from tifkit.batch import n_workers

    return n_workers(p, n_tasks) if workers is None else max(1, min(int(workers), n_tasks))
