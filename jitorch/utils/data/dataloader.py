"""DataLoader: batches from a dataset, in the main process or in worker processes.

With `num_workers > 0`, each worker gets tasks (a batch's indices) on its own queue and sends collated
batches back over its own pipe; the main process keeps `prefetch_factor * num_workers` tasks in flight,
hands them out round-robin and yields results in task order. A worker's exception is re-raised in the
main process with the worker id and the original traceback; a worker that dies is reported, not waited
for. Workers exit when the iterator is exhausted, dropped, or (persistent workers) when the DataLoader is.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from typing import Any

import jitorch
from jitorch.utils.data.collate import default_collate, default_convert
from jitorch.utils.data.dataset import IterableDataset
from jitorch.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from jitorch.utils.data.worker import (
    ExceptionWrapper,
    IterableExhausted,
    WorkerConfig,
    make_fetcher,
    worker_loop,
)

# how long the main process waits for a result before checking that the workers are alive
_STATUS_CHECK_INTERVAL = 5.0


class _InfiniteConstantSampler(Sampler):
    """The 'indices' of an iterable dataset: None, forever (the dataset decides when to stop)."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class DataLoader:
    """Iterate over a dataset in batches (`torch.utils.data.DataLoader`, same arguments and defaults)."""

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Any = None, batch_sampler: Sampler | Any = None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: jitorch.Generator | None = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True) -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, but got "
                                     f"{name}={value}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and "
                                 "drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_sampler is not None else default_convert)
        self.pin_memory = pin_memory  # there is no device memory to pin for: a no-op
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._iterator: _BaseIterator | None = None
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_initialized") and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> _BaseIterator:
        if self.num_workers == 0:
            return _SingleProcessIterator(self)
        if not self.persistent_workers:
            return _MultiProcessIterator(self)
        if self._iterator is None:
            self._iterator = _MultiProcessIterator(self)
        else:
            self._iterator._reset()
        return self._iterator

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            length = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)

    def __del__(self) -> None:
        iterator = self.__dict__.get("_iterator")
        if iterator is not None:
            iterator._shutdown_workers()


class _BaseIterator:
    """What iterating a DataLoader gives: the loader's settings, copied, and the sampler's position."""

    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._iterable = isinstance(loader.dataset, IterableDataset)
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._generator = loader.generator
        self._timeout = loader.timeout
        self._length = _safe_len(loader)
        # drawn for every iterator whatever num_workers is, so workers do not change the sampler's stream
        self._base_seed = (loader.generator or jitorch.default_generator).next_seed()
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0

    def __iter__(self) -> _BaseIterator:
        return self

    def __len__(self) -> int:
        return len(self._index_sampler)

    def _next_index(self) -> Any:
        return next(self._sampler_iter)

    def __next__(self) -> Any:
        data = self._next_data()
        self._num_yielded += 1
        if self._iterable and self._length is not None and self._num_yielded > self._length:
            warnings.warn(f"Length of IterableDataset {self._dataset} was reported to be {self._length} (when "
                          f"accessing len(dataloader)), but {self._num_yielded} samples have been fetched. ",
                          stacklevel=2)
        return data

    def _next_data(self) -> Any:
        raise NotImplementedError

    def _reset(self) -> None:
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0


def _safe_len(loader: DataLoader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


class _SingleProcessIterator(_BaseIterator):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._fetcher = make_fetcher(self._dataset, self._auto_collation, self._collate_fn, self._drop_last)

    def _next_data(self) -> Any:
        return self._fetcher.fetch(self._next_index())


def _start_method(context: Any) -> Any:
    if context is None:
        methods = multiprocessing.get_all_start_methods()
        return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    if isinstance(context, str):
        return multiprocessing.get_context(context)
    return context


class _MultiProcessIterator(_BaseIterator):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor or 0
        self._persistent = loader.persistent_workers
        context = _start_method(loader.multiprocessing_context)
        self._done = context.Event()
        self._task_queues: list[Any] = []
        self._result_pipes: list[Any] = []
        self._workers: list[Any] = []
        self._shutdown = False
        self._generation = 0
        try:
            for worker_id in range(self._num_workers):
                tasks = context.Queue()
                reader, writer = context.Pipe(duplex=False)
                config = WorkerConfig(self._dataset, self._auto_collation, self._collate_fn, self._drop_last,
                                      self._base_seed, loader.worker_init_fn, worker_id, self._num_workers,
                                      os.getpid())
                worker = context.Process(target=worker_loop, args=(config, tasks, writer, self._done), daemon=True)
                worker.start()
                writer.close()  # the worker holds the only write end, so its death reads as EOF here
                self._task_queues.append(tasks)
                self._result_pipes.append(reader)
                self._workers.append(worker)
        except BaseException:
            self._shutdown_workers()
            raise
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._send_index = 0  # next task to hand out
        self._received_index = 0  # next task to yield
        self._task_info: dict[int, tuple] = {}  # task -> (worker,) while pending, (worker, payload) when done
        self._outstanding = 0
        self._workers_active = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _reset(self) -> None:
        """A new epoch on persistent workers: results still in flight from the last one are dropped."""
        super()._reset()
        self._generation += 1
        self._start_epoch()

    def _try_put_index(self) -> None:
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):
            worker_id = next(self._worker_cycle)
            if self._workers_active[worker_id]:
                break
        else:
            return
        self._task_queues[worker_id].put((self._generation, self._send_index, index))
        self._task_info[self._send_index] = (worker_id,)
        self._outstanding += 1
        self._send_index += 1

    def _next_data(self) -> Any:
        while True:
            while self._received_index < self._send_index:  # skip tasks of workers whose iterable has ended
                info = self._task_info.get(self._received_index)
                if info is not None and (len(info) == 2 or self._workers_active[info[0]]):
                    break
                self._task_info.pop(self._received_index, None)
                self._received_index += 1
            else:
                if not self._persistent:
                    self._shutdown_workers()
                raise StopIteration
            info = self._task_info[self._received_index]
            if len(info) == 2:
                del self._task_info[self._received_index]
                self._received_index += 1
                return self._process(info[1])
            task, worker_id, payload = self._receive()
            self._outstanding -= 1
            if isinstance(payload, IterableExhausted):
                self._workers_active[payload.worker_id] = False
                self._try_put_index()
                continue
            if task == self._received_index:
                del self._task_info[task]
                self._received_index += 1
                return self._process(payload)
            self._task_info[task] = (worker_id, payload)

    def _process(self, payload: Any) -> Any:
        self._try_put_index()
        if isinstance(payload, ExceptionWrapper):
            payload.reraise()
        return payload

    def _receive(self) -> tuple[int, int, Any]:
        """The next result of this epoch from any worker, waiting at most `timeout` seconds if one was given."""
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait_for = _STATUS_CHECK_INTERVAL if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(self._result_pipes, timeout=min(wait_for, _STATUS_CHECK_INTERVAL))
            for pipe in ready:
                worker_id = self._result_pipes.index(pipe)
                try:
                    message = pipe.recv_bytes()
                except (EOFError, OSError):
                    self._worker_died(worker_id)
                generation, task, sender, payload = pickle.loads(message)
                if generation == self._generation:
                    return task, sender, payload
            if not ready:
                for worker_id, worker in enumerate(self._workers):
                    if not worker.is_alive():
                        self._worker_died(worker_id)
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")

    def _worker_died(self, worker_id: int) -> None:
        worker = self._workers[worker_id]
        worker.join(timeout=1.0)
        self._shutdown_workers()
        raise RuntimeError(f"DataLoader worker {worker_id} (pid {worker.pid}) exited unexpectedly with exit code "
                           f"{worker.exitcode}")

    def _shutdown_workers(self) -> None:
        """Ask every worker to exit, wait a little, then terminate any still running."""
        if self._shutdown:
            return
        self._shutdown = True
        try:
            self._done.set()
            for tasks in self._task_queues:
                tasks.put(None)
            self._drain_until_exit(time.monotonic() + _STATUS_CHECK_INTERVAL)
        finally:
            for worker in self._workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join(timeout=1.0)
            for tasks in self._task_queues:
                tasks.cancel_join_thread()
                tasks.close()
            for pipe in self._result_pipes:
                pipe.close()

    def _drain_until_exit(self, deadline: float) -> None:
        """Read and drop results while waiting for the workers to exit: a worker blocked writing a large batch
        to a full pipe could not otherwise see the request to stop."""
        pipes = list(self._result_pipes)
        while pipes and any(worker.is_alive() for worker in self._workers) and time.monotonic() < deadline:
            for pipe in wait(pipes, timeout=0.05):
                try:
                    pipe.recv_bytes()
                except (EOFError, OSError):
                    pipes.remove(pipe)
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def __del__(self) -> None:
        if not self.__dict__.get("_shutdown", True):
            self._shutdown_workers()
