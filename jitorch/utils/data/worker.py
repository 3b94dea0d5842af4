"""What runs inside a DataLoader worker process, and what it shares with the main process.

A worker takes `(generation, task, indices)` messages from its own task queue, fetches and collates the
samples, and sends `(generation, task, worker_id, payload)` back, pickled by the worker itself, over its
own result pipe. The payload is the batch, an `ExceptionWrapper` carrying the error and its traceback
text, or `IterableExhausted` when its copy of an iterable dataset ran out. `None` on the task queue (or
the shared done event) tells it to exit.
"""
from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import jitorch

# how often an idle worker checks that its parent is alive and has not asked it to stop
_PARENT_CHECK_INTERVAL = 0.2


@dataclass(frozen=True)
class WorkerInfo:
    """`get_worker_info()` inside a worker: its id, the number of workers, its seed and its copy of the dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's `WorkerInfo`, or None in the main process."""
    return _worker_info


class ExceptionWrapper:
    """An exception caught in a worker, sent to the main process and raised there with the original traceback."""

    def __init__(self, exc_info: tuple | None = None, where: str = "in background") -> None:
        exc_type, exc, tb = exc_info if exc_info is not None else sys.exc_info()
        self.exc_type = exc_type
        self.exc_msg = "".join(traceback.format_exception(exc_type, exc, tb))
        self.where = where

    def reraise(self) -> None:
        # no local names the exception: a frame holding it would make a reference cycle with its traceback,
        # keeping the DataLoader iterator (and its workers) alive until the garbage collector runs
        raise self._exception()

    def _exception(self) -> BaseException:
        message = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            return KeyError(_KeyErrorMessage(message))
        try:
            return self.exc_type(message)
        except Exception:  # noqa: BLE001 - an exception type whose constructor wants other arguments
            return RuntimeError(message)

    def __reduce__(self) -> Any:
        try:  # an exception class defined inside a function cannot be pickled: send a RuntimeError instead
            pickle.dumps(self.exc_type)
            exc_type = self.exc_type
        except Exception:  # noqa: BLE001 - whatever stops pickling it
            exc_type = RuntimeError
        return (_rebuild_wrapper, (exc_type, self.exc_msg, self.where))


def _rebuild_wrapper(exc_type: type, exc_msg: str, where: str) -> ExceptionWrapper:
    wrapper = ExceptionWrapper.__new__(ExceptionWrapper)
    wrapper.exc_type, wrapper.exc_msg, wrapper.where = exc_type, exc_msg, where
    return wrapper


class _KeyErrorMessage(str):
    """KeyError prints its argument with repr(); this keeps the traceback text readable."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class IterableExhausted:
    """A worker's copy of an IterableDataset has no more samples."""

    worker_id: int


# -------------------------------------------------------------------------------------------------
# fetchers: indices -> collated batch, in the main process (num_workers=0) and in workers


class MapFetcher:
    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable, drop_last: bool) -> None:
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        getitems = getattr(dataset, "__getitems__", None)
        self.getitems = getitems if callable(getitems) else None

    def fetch(self, index: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        data = self.getitems(index) if self.getitems is not None else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class IterableFetcher:
    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable, drop_last: bool) -> None:
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def make_fetcher(dataset: Any, auto_collation: bool, collate_fn: Callable, drop_last: bool) -> Any:
    from jitorch.utils.data.dataset import IterableDataset
    kind = IterableFetcher if isinstance(dataset, IterableDataset) else MapFetcher
    return kind(dataset, auto_collation, collate_fn, drop_last)


# -------------------------------------------------------------------------------------------------
# the worker process


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, passed once when it starts (pickled under the spawn start method)."""

    dataset: Any
    auto_collation: bool
    collate_fn: Callable
    drop_last: bool
    base_seed: int
    init_fn: Callable[[int], None] | None
    worker_id: int
    num_workers: int
    parent_pid: int


def _single_threaded() -> None:
    """One compute thread per worker, as PyTorch does; a forked copy of the parent's thread pool has no threads."""
    if "jitorch.codegen.runtime" in sys.modules:
        jitorch.set_num_threads(1)


def seed_worker(seed: int) -> None:
    """Seed the random streams a worker's samples may use: Python's, jitorch's and numpy's global ones.

    PyTorch leaves numpy's global generator alone, so forked workers draw identical numbers; seeding it
    here gives each worker its own stream (a worker_init_fn can still reseed it).
    """
    random.seed(seed)
    jitorch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)


def worker_loop(config: WorkerConfig, tasks: Any, results: Any, done: Any) -> None:
    """The body of a worker process (see the module docstring)."""
    global _worker_info
    where = f"in DataLoader worker process {config.worker_id}"
    try:
        _single_threaded()
        seed = config.base_seed + config.worker_id
        seed_worker(seed)
        _worker_info = WorkerInfo(config.worker_id, config.num_workers, seed, config.dataset)
        init_error = None
        fetcher, generation = None, None
        try:
            if config.init_fn is not None:
                config.init_fn(config.worker_id)
        except Exception:  # noqa: BLE001 - any error of user code goes to the main process
            init_error = ExceptionWrapper(where=where)
        while True:
            try:
                message = tasks.get(timeout=_PARENT_CHECK_INTERVAL)
            except queue.Empty:
                if os.getppid() != config.parent_pid or done.is_set():
                    break
                continue
            if message is None or done.is_set():
                break
            task_generation, task, index = message
            if task_generation != generation:  # a new epoch of persistent workers: restart the dataset
                generation, fetcher = task_generation, None
            payload: Any
            if init_error is not None:
                payload, init_error = init_error, None
            else:
                try:
                    if fetcher is None:
                        fetcher = make_fetcher(config.dataset, config.auto_collation, config.collate_fn,
                                               config.drop_last)
                    payload = fetcher.fetch(index)
                except StopIteration:
                    payload = IterableExhausted(config.worker_id)
                except Exception:  # noqa: BLE001 - any error of user code goes to the main process
                    payload = ExceptionWrapper(where=where)
            results.send_bytes(_pickle_result((generation, task, config.worker_id, payload), where))
    except KeyboardInterrupt:
        pass  # the main process handles Ctrl-C
    except (BrokenPipeError, EOFError):
        pass  # the main process is gone
    finally:
        results.close()
        tasks.cancel_join_thread()


def _pickle_result(message: tuple, where: str) -> bytes:
    """Pickle here rather than in a queue's feeder thread, so an unpicklable batch becomes an error the main
    process sees instead of a silent hang."""
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - whatever stops pickling the batch
        generation, task, worker_id, _ = message
        return pickle.dumps((generation, task, worker_id, ExceptionWrapper(where=where)))
