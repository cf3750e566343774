"""Worker processes for the notebooks' studies: spawned, one torch thread each, quiet as a notebook."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.influence import dpo_loss_per_pair, implicit_reward_margin
from tifkit.io import content_hash
from tifkit.train import LOSS_TYPES



# ------------------------------------------------------------------------------------------------
# Worker processes for the notebooks' multi-family studies (claims 1 and 6). The pattern is
# tifkit.batch.run_seeds': spawned processes, one torch thread each (batch._init_worker), a task
# per independent unit of work, every task deterministic on its own and cached through the
# pipeline's stages (file locks make two tasks that need the same stage wait for each other).

def _init_quiet_worker() -> None:
    """Worker set-up: one torch thread (tifkit.batch._init_worker), libraries quiet as in a notebook
    (no per-stage progress bars or warnings from transformers, datasets, TRL on the kernel's stderr)."""
    from tifkit.batch import _init_worker
    from tifkit.notebooks import notebook_setup

    notebook_setup(threads=1, chdir=False)
    _init_worker()


def _pool_map(tasks: dict, workers: int, desc: str, show_progress: bool = True, then=None) -> dict:
    """Run {key: (fn, args)} in `workers` spawned processes (in this process, on one torch thread,
    when workers == 1); returns {key: result}. `then(key, result)` may return more {key: (fn, args)}
    to submit once a task is done (a seed's shared stages first, then its rules)."""
    import torch
    from tqdm.auto import tqdm

    out: dict = {}
    bar = tqdm(total=len(tasks), desc=f"{desc} ({workers} worker{'s' * (workers > 1)})", disable=not show_progress)
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            todo = dict(tasks)
            while todo:
                key, (fn, args) = next(iter(todo.items()))
                del todo[key]
                out[key] = fn(*args)
                more = then(key, out[key]) if then else None
                if more:
                    todo.update(more)
                    bar.total += len(more)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_quiet_worker) as pool:
            pending = {pool.submit(fn, *args): key for key, (fn, args) in tasks.items()}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    out[key] = fut.result()  # a worker's error stops here, with its message
                    more = then(key, out[key]) if then else None
                    if more:
                        pending.update({pool.submit(fn, *args): k for k, (fn, args) in more.items()})
                        bar.total += len(more)
                    bar.update()
    bar.close()
    return out


def _quiet(p):
    return dataclasses.replace(p, run=dataclasses.replace(p.run, show_progress=False))


def _workers(p, n_tasks: int, workers: int | None) -> int:
    from tifkit.batch import n_workers

    return n_workers(p, n_tasks) if workers is None else max(1, min(int(workers), n_tasks))
