"""Datasets, samplers, default_collate and the DataLoader, in the main process and with worker processes."""
from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import jitorch as torch
from jitorch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)

Point = collections.namedtuple("Point", ["x", "y"])


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: a worker bug must not block the test run."""
    def expired(signum, frame):
        raise TimeoutError(f"test did not finish within {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _dataset(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(2 * n).float().reshape(n, 2), torch.arange(n))


def _labels(loader) -> list[list[int]]:
    return [labels.tolist() for _, labels in loader]


# ---------------------------------------------------------------------------------------------------
# main process


def test_sequential_batches_shapes_and_len():
    loader = DataLoader(_dataset(), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [tuple(x.shape) for x, _ in batches] == [(4, 2), (4, 2), (2, 2)]
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64
    assert _labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    np.testing.assert_array_equal(batches[2][0].numpy(), [[16, 17], [18, 19]])


def test_drop_last_and_batch_size_one():
    loader = DataLoader(_dataset(), batch_size=4, drop_last=True)
    assert len(loader) == 2 and _labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    single = list(DataLoader(_dataset(3)))
    assert [tuple(x.shape) for x, _ in single] == [(1, 2)] * 3


def test_shuffle_is_reproducible_with_a_seeded_generator():
    def orders(seed):
        loader = DataLoader(_dataset(), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [list(itertools.chain.from_iterable(_labels(loader))) for _ in range(3)]

    first = orders(7)
    assert first == orders(7)
    assert all(sorted(epoch) == list(range(10)) for epoch in first)
    assert first[0] != first[1] and first != orders(8)


def test_shuffle_follows_manual_seed():
    def epoch():
        return list(itertools.chain.from_iterable(_labels(DataLoader(_dataset(), batch_size=4, shuffle=True))))

    torch.manual_seed(3)
    first = [epoch(), epoch()]
    torch.manual_seed(3)
    assert [epoch(), epoch()] == first
    assert first[0] != first[1]


def test_default_collate_structures():
    batch = default_collate([
        {"image": np.full((2, 2), i, dtype=np.float32), "label": i, "score": i / 2, "name": f"s{i}",
         "pair": (torch.tensor([i]), [i, i + 1]), "point": Point(np.int64(i), np.float64(i)), "flag": i > 0}
        for i in range(3)])
    assert tuple(batch["image"].shape) == (3, 2, 2) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 1, 2]
    assert batch["score"].dtype == torch.float64 and batch["score"].tolist() == [0.0, 0.5, 1.0]
    assert batch["name"] == ["s0", "s1", "s2"]
    assert batch["flag"].dtype == torch.bool and batch["flag"].tolist() == [False, True, True]
    tensors, lists = batch["pair"][0], batch["pair"][1]
    assert isinstance(batch["pair"], list) and tensors.tolist() == [[0], [1], [2]]
    assert [item.tolist() for item in lists] == [[0, 1, 2], [1, 2, 3]]
    assert isinstance(batch["point"], Point) and batch["point"].x.dtype == torch.int64
    assert batch["point"].y.dtype == torch.float64
    ordered = default_collate([collections.OrderedDict(b=1, a=2.0)] * 2)
    assert isinstance(ordered, collections.OrderedDict) and list(ordered) == ["b", "a"]


def test_default_collate_errors():
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors, numpy arrays, numbers"):
        default_collate([object(), object()])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_batch_size_none_converts_without_batching():
    class Arrays(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.arange(3) + i, "label"

    items = list(DataLoader(Arrays(), batch_size=None))
    assert [tuple(x.tolist()) for x, _ in items] == [(0, 1, 2), (1, 2, 3)] and items[0][1] == "label"


def test_custom_sampler_batch_sampler_and_collate_fn():
    loader = DataLoader(_dataset(), batch_size=2, sampler=[9, 0, 5])
    assert _labels(loader) == [[9, 0], [5]]
    loader = DataLoader(_dataset(), batch_sampler=[[1, 2, 3], [7]], collate_fn=lambda items: [b for _, b in items])
    assert [[t.item() for t in batch] for batch in loader] == [[1, 2, 3], [7]] and len(loader) == 2


def test_dataloader_argument_errors():
    data = _dataset()
    for kwargs, message in [
        ({"num_workers": -1}, "num_workers option should be non-negative"),
        ({"timeout": -1}, "timeout option should be non-negative"),
        ({"prefetch_factor": 2}, "prefetch_factor option could only be specified in multiprocessing"),
        ({"persistent_workers": True}, "persistent_workers option needs num_workers > 0"),
        ({"sampler": [0], "shuffle": True}, "sampler option is mutually exclusive with shuffle"),
        ({"batch_sampler": [[0]], "batch_size": 2}, "batch_sampler option is mutually exclusive"),
        ({"batch_size": None, "drop_last": True}, "batch_size=None option disables auto-batching"),
    ]:
        with pytest.raises(ValueError, match=message):
            DataLoader(data, **kwargs)
    loader = DataLoader(data)
    with pytest.raises(ValueError, match="batch_size attribute should not be set after DataLoader is initialized"):
        loader.batch_size = 4


class Stream(IterableDataset):
    """0..n-1, split between workers by get_worker_info()."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self) -> int:
        return self.n


def test_iterable_dataset():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]] and len(loader) == 3
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="DataLoader with IterableDataset: expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)


def test_datasets_subset_concat_random_split():
    data = _dataset()
    subset = Subset(data, [4, 2])
    assert len(subset) == 2 and subset[1][1].item() == 2
    both = data + Subset(data, [0, 1])
    assert isinstance(both, ConcatDataset) and len(both) == 12
    assert both[10][1].item() == 0 and both[-1][1].item() == 1 and both[3][1].item() == 3
    parts = random_split(data, [3, 7], generator=torch.Generator().manual_seed(0))
    again = random_split(data, [3, 7], generator=torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [3, 7] and parts[0].indices == again[0].indices
    assert sorted(parts[0].indices + parts[1].indices) == list(range(10))
    assert [len(p) for p in random_split(data, [0.5, 0.3, 0.2])] == [5, 3, 2]
    assert [len(p) for p in random_split(range(11), [0.5, 0.5])] == [6, 5]
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset"):
        random_split(data, [3, 3])
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(torch.zeros(3), torch.zeros(4))


def test_samplers():
    source = range(10)
    assert list(SequentialSampler(source)) == list(range(10))
    generator = torch.Generator().manual_seed(1)
    drawn = list(RandomSampler(source, replacement=True, num_samples=70, generator=generator))
    assert len(drawn) == 70 and set(drawn) <= set(range(10)) and len(set(drawn)) > 5
    twice = list(RandomSampler(source, num_samples=25, generator=generator))
    assert len(twice) == 25 and sorted(twice[:10]) == list(range(10))
    assert sorted(SubsetRandomSampler([3, 5, 8], generator=generator)) == [3, 5, 8]
    weighted = list(WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 200, generator=generator))
    assert set(weighted) == {1, 3} and 100 < weighted.count(3) < 190
    assert sorted(WeightedRandomSampler([1, 1, 1], 3, replacement=False, generator=generator)) == [0, 1, 2]
    assert list(BatchSampler(range(5), 2, drop_last=False)) == [[0, 1], [2, 3], [4]]
    assert len(BatchSampler(range(5), 2, drop_last=True)) == 2
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        RandomSampler(source, num_samples=0)
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(range(3), 0, drop_last=False)


# ---------------------------------------------------------------------------------------------------
# worker processes (small datasets: each loader starts its own processes)


class Traced(Dataset):
    """Samples that say which process made them and whether worker_init_fn ran there first."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        info = get_worker_info()
        return {"index": index, "value": torch.full((2,), float(index)), "pid": os.getpid(),
                "worker": -1 if info is None else info.id, "init": _INIT_MARK}


_INIT_MARK = -1


def _mark_init(worker_id: int) -> None:
    global _INIT_MARK
    _INIT_MARK = 100 + worker_id


def test_workers_give_the_same_batches_as_the_main_process():
    before = multiprocessing.active_children()
    with deadline(60):
        def run(workers):
            loader = DataLoader(Traced(), batch_size=5, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(5), worker_init_fn=_mark_init)
            return [batch for _ in range(2) for batch in loader]

        main, workers = run(0), run(2)
    assert [b["index"].tolist() for b in main] == [b["index"].tolist() for b in workers]
    assert all(np.array_equal(a["value"].numpy(), b["value"].numpy()) for a, b in zip(main, workers))
    assert [b["index"].shape[0] for b in workers] == [5, 5, 2, 5, 5, 2]
    assert {b["worker"][0].item() for b in workers} == {0, 1}
    assert all((b["init"] == 100 + b["worker"]).all().item() for b in workers)
    assert all(b["pid"][0].item() != os.getpid() for b in workers)
    assert _new_children(before) == []  # exhausting the iterator shut its workers down


class Failing(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        if index == 5:
            raise ValueError(f"sample {index} is corrupt")
        return index


def test_worker_exception_is_reraised_with_worker_id_and_traceback():
    before = multiprocessing.active_children()
    with deadline(30):
        loader = DataLoader(Failing(), batch_size=2, num_workers=2)
        seen = []
        with pytest.raises(ValueError) as caught:
            for batch in loader:
                seen.append(batch.tolist())
        gc.collect()
    message = str(caught.value)
    assert "Caught ValueError in DataLoader worker process 0" in message
    assert "Original Traceback (most recent call last)" in message
    assert 'raise ValueError(f"sample {index} is corrupt")' in message and "sample 5 is corrupt" in message
    assert seen == [[0, 1], [2, 3]]
    del caught, loader  # the traceback holds the iterator; dropping it shuts the workers down
    gc.collect()
    _wait_for_no_new_children(before)


def _new_children(before: list) -> list:
    """Child processes started since `before` (other tests' processes, if any, do not count)."""
    return [p for p in multiprocessing.active_children() if p not in before]


def _wait_for_no_new_children(before: list) -> None:
    for _ in range(100):
        if not _new_children(before):
            return
        time.sleep(0.05)
    raise AssertionError(f"worker processes left running: {_new_children(before)}")


def test_workers_exit_when_the_iterator_is_dropped():
    before = multiprocessing.active_children()
    with deadline(30):
        iterator = iter(DataLoader(Traced(), batch_size=2, num_workers=2))
        next(iterator)
        assert len(_new_children(before)) == 2
        del iterator
        _wait_for_no_new_children(before)


class Dying(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        if get_worker_info() is not None and index == 2:
            os._exit(3)
        return index


def test_dead_worker_and_timeout_raise():
    before = multiprocessing.active_children()
    with deadline(30):
        with pytest.raises(RuntimeError, match=r"DataLoader worker 1 \(pid \d+\) exited unexpectedly"):
            list(DataLoader(Dying(), batch_size=2, num_workers=2))
        with pytest.raises(RuntimeError, match="DataLoader timed out after 0.2 seconds"):
            list(DataLoader(Slow(), batch_size=1, num_workers=1, timeout=0.2))
    _wait_for_no_new_children(before)


class Slow(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        time.sleep(0.6)
        return index


def test_iterable_dataset_with_workers_and_persistent_workers():
    before = multiprocessing.active_children()
    with deadline(60):
        loader = DataLoader(Stream(8), batch_size=2, num_workers=2)
        batches = [b.tolist() for b in loader]
        assert batches == [[0, 2], [1, 3], [4, 6], [5, 7]] and len(loader) == 4
        persistent = DataLoader(Traced(), batch_size=4, num_workers=2, persistent_workers=True)
        epochs = [list(persistent) for _ in range(2)]
        assert [[b["index"].tolist() for b in epoch] for epoch in epochs] == [[[0, 1, 2, 3], [4, 5, 6, 7],
                                                                              [8, 9, 10, 11]]] * 2
        pids = [{p for b in epoch for p in b["pid"].tolist()} for epoch in epochs]
        assert pids[0] == pids[1] and len(pids[0]) == 2
        del persistent
        gc.collect()
        _wait_for_no_new_children(before)
