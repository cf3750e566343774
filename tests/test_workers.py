"""tifkit.workers.pool_map: tasks by key, follow-up tasks when a task finishes, in this process and in
spawned worker processes, and a worker's error reaching the caller."""
import operator

import pytest
import torch

from tifkit.workers import pool_map


def _square(x):
    return x * x


def _plus_one(x):
    return x + 1


def _fail(x):
    raise ValueError(f"task {x} failed")


def _follow_up(key, result):
    """After each ("first", i): one ("next", i) task on its result; nothing after those."""
    return {("next", key[1]): (_plus_one, (result,))} if key[0] == "first" else None


def test_pool_map_runs_follow_up_tasks_in_process():
    threads = torch.get_num_threads()
    out = pool_map({("first", i): (_square, (i,)) for i in range(3)}, 1, "test", False, _follow_up)
    assert out == {**{("first", i): i * i for i in range(3)}, **{("next", i): i * i + 1 for i in range(3)}}
    assert torch.get_num_threads() == threads  # the one-thread setting is undone afterwards
    assert pool_map({}, 1, "nothing", False) == {}


def test_pool_map_runs_follow_up_tasks_in_worker_processes():
    # functions from the standard library: a spawned worker imports them without the tests folder;
    # no initializer, so the workers need not import torch
    def then(key, result):
        return {("next", key[1]): (operator.add, (result, 1))} if key[0] == "first" else None

    out = pool_map({("first", i): (operator.mul, (i, i)) for i in range(4)}, 2, "test", False, then, initializer=None)
    assert out == {**{("first", i): i * i for i in range(4)}, **{("next", i): i * i + 1 for i in range(4)}}


def test_pool_map_passes_a_task_error_on():
    with pytest.raises(ValueError, match="task 2 failed"):
        pool_map({("ok", 1): (_square, (1,)), ("bad", 2): (_fail, (2,))}, 1, "test", False)
