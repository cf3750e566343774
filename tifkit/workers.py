"""Worker processes for independent work (seeds, rules, families, settings): spawned, one torch
thread each, every task deterministic on its own and cached through the pipeline's stages (the
stage file locks make two tasks that need the same stage wait for each other). The one pool of the
kit: the batch (tifkit.batch.run_seeds) and the studies of tifkit.experiments (`quiet_pool_map`:
workers as quiet as a notebook) both run here.

- `pool_map(tasks, workers, desc, ...)`: {key: (fn, args)} -> {key: result}, with follow-up tasks;
- `n_workers(params, n_tasks)` / `worker_count(params, n_tasks, workers)`: how many processes;
- `quiet_libraries()`: offline, no warnings or progress bars from transformers, datasets, TRL
  (notebooks and quiet workers set up through it); `quiet_params(p)`: run.show_progress off.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import warnings

from tifkit import TifkitError


def init_worker() -> None:
    """Worker set-up: one torch thread (several workers share the cores), quiet tokenizers."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_libraries() -> None:
    """Offline and quiet: HF_HUB_OFFLINE, no tokenizer threads, no FutureWarning/UserWarning, and
    no log lines or progress bars from transformers, datasets, TRL, accelerate."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # the same filters for the worker processes a notebook spawns: they read PYTHONWARNINGS at start-up,
    # before importing transformers (whose FutureWarnings would otherwise reach the notebook's output)
    quiet = "ignore::FutureWarning,ignore::UserWarning,ignore::DeprecationWarning"
    if quiet not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(x for x in (os.environ.get("PYTHONWARNINGS"), quiet) if x)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message="IProgress not found")
    try:
        from tqdm import TqdmWarning  # e.g. "IProgress not found" where ipywidgets is missing

        warnings.filterwarnings("ignore", category=TqdmWarning)
    except ImportError:  # pragma: no cover
        pass
    for name in ("transformers", "datasets", "trl", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        # a worker process of a notebook's study: its stage messages would reach the notebook's output
        # line by line (a kernel shows its children's output); the parent's progress bar counts the
        # tasks instead, and a worker's error still comes back through its result
        sys.stdout = open(os.devnull, "w")
    try:
        from datasets.utils.logging import disable_progress_bar
        from transformers.utils import logging as hf_logging

        disable_progress_bar()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - a library missing or changed
        pass


def init_quiet_worker() -> None:
    """Worker set-up of the experiments' pools: libraries quiet as in a notebook (no per-stage
    progress bars or warnings on the kernel's stderr), one torch thread."""
    quiet_libraries()
    init_worker()


def quiet_params(p):
    """`p` with run.show_progress off (what a worker process runs with)."""
    return dataclasses.replace(p, run=dataclasses.replace(p.run, show_progress=False))


def n_workers(params, n_tasks: int | None = None) -> int:
    """`run.workers`, or one per CPU core available to this process (0), at most `n_tasks`."""
    w = int(params.run.workers)
    if w < 0:
        raise TifkitError(f"run.workers={w} is negative; use 0 (one per CPU core) or a positive count.")
    if w == 0:
        w = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(w, n_tasks) if n_tasks else w)


def worker_count(params, n_tasks: int, workers: int | None = None) -> int:
    """`workers` (at least 1, at most `n_tasks`), or n_workers(params, n_tasks) when None."""
    return n_workers(params, n_tasks) if workers is None else max(1, min(int(workers), n_tasks))


def quiet_pool_map(tasks: dict, workers: int, desc: str, show_progress: bool = True, then=None) -> dict:
    """`pool_map` with workers as quiet as a notebook (`init_quiet_worker`)."""
    # the workers' stage messages are silenced, so one bar counting the tasks stands for them whatever
    # `show_progress` (which the stages inside the workers follow) says
    return pool_map(tasks, workers, desc, True, then, initializer=init_quiet_worker)


class _Terminated(SystemExit):
    """SIGTERM while a pool ran (exit status 128 + 15)."""


@contextlib.contextmanager
def _terminate_raises():
    """While a pool runs in the main thread, SIGTERM raises SystemExit(143) there instead of ending the
    process at once, so that the pool's workers are stopped too (`kill <pid>` of a batch, a family grid
    or a notebook's study would otherwise leave them training, unseen, until their queued tasks end).
    A SIGTERM handler installed before (a scheduler's, say) runs after the workers are stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise _Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except _Terminated:
        if callable(previous):
            previous(signal.SIGTERM, None)
        raise
    finally:
        if previous is not None:  # None: a handler not installed from Python, which cannot be restored
            signal.signal(signal.SIGTERM, previous)


def _stop_workers(pool) -> None:
    """Cancel what is queued and end the worker processes now (an interrupt, a signal, a task's error):
    their stages are saved atomically, so a stopped task leaves nothing half-written, and a rerun
    resumes from the stages that were finished."""
    # the executor keeps its processes in `_processes` (Python 3.11-3.13 have no public way to end them;
    # 3.14's terminate_workers does this)
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=30)


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

        with _terminate_raises(), ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                                      initializer=initializer) as pool:
            try:
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
            except BaseException:
                _stop_workers(pool)
                raise
    bar.close()
    return out
