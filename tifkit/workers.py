"""Worker processes for independent work (seeds, rules, families, settings): spawned, one torch
thread each, every task deterministic on its own and cached through the pipeline's stages (the
stage file locks make two tasks that need the same stage wait for each other). One pool for the
batch (tifkit.batch.run_seeds) and the notebooks' studies (tifkit.experiments)."""
from __future__ import annotations

import os


def init_worker() -> None:
    """Worker set-up: one torch thread (several workers share the cores), quiet tokenizers."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pool_map(tasks: dict, workers: int, desc: str, show_progress: bool = True, then=None,
             initializer=init_worker) -> dict:
    """Run {key: (fn, args)} in `workers` spawned processes (in this process, on one torch thread,
    when workers == 1); returns {key: result}. `then(key, result)` may return more {key: (fn, args)}
    to submit once a task is done (a seed's shared stages first, then its rules). `initializer` runs
    once in each spawned worker (default: one torch thread)."""
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
                                 initializer=initializer) as pool:
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
