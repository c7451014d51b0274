"""Data loading for every pass over images: chunked loading, skipped unreadable files, stop checks.

`make_loader` gives a PassLoader: one pass over a dataset in batches, loaded by DataLoader
workers in small chunks (bounded prefetch memory) and joined on the device. Datasets return
(index, image[, label]) items, with image None for an unreadable training file;
`collate_skip_bad` drops those and the Batch records which indices were skipped.
"""
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from utils import dist
from utils.errors import UserError
from utils.runtime import Runtime, limit_worker_memory
from utils.signals import check_stop, ignore_interrupts


@dataclass
class Batch:
    """A collated batch: dataset indices [B] and images uint8 [B, 3, H, W] (+ labels [B, H, W]).

    n_skipped images of the batch could not be read; `skipped` holds their dataset indices.
    """

    indices: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor | None = None
    n_skipped: int = 0
    skipped: tuple[int, ...] = ()

    def pin_memory(self):
        self.images = self.images.pin_memory()
        if self.labels is not None:
            self.labels = self.labels.pin_memory()
        return self


def collate_skip_bad(items: list) -> Batch:
    """Stack (index, image[, label]) items, dropping training items whose image was unreadable."""
    good = [item for item in items if item[1] is not None]
    skipped = tuple(int(item[0]) for item in items if item[1] is None)
    if not good:
        return Batch(torch.empty(0, dtype=torch.long), torch.empty(0, 3, 1, 1, dtype=torch.uint8), None,
                     len(skipped), skipped)
    indices = torch.tensor([item[0] for item in good], dtype=torch.long)
    images = torch.stack([item[1] for item in good])
    labels = torch.stack([item[2] for item in good]) if len(good[0]) > 2 else None
    return Batch(indices, images, labels, len(skipped), skipped)


class ChunkedBatchSampler:
    """Splits the sampler's order into batches of `batch_size`, and each batch into chunks of at
    most `chunk` images, so that workers load small pieces (see PassLoader)."""

    def __init__(self, sampler, batch_size: int, chunk: int):
        self.sampler, self.batch_size, self.chunk = sampler, batch_size, chunk

    def batches(self) -> list[list[int]]:
        order = list(self.sampler)
        return [order[start: start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def __iter__(self):
        for batch in self.batches():
            for start in range(0, len(batch), self.chunk):
                yield batch[start: start + self.chunk]

    def __len__(self) -> int:
        return sum(-(-len(b) // self.chunk) for b in self.batches())


class PassLoader:
    """One pass over a dataset in batches of `batch_size`, loaded by workers in chunks of at most
    `chunk` images and joined on the device.

    Memory in flight is workers x prefetch x chunk images instead of workers x prefetch x batch
    (at batch 256 and 640x640 base images, 14 workers held ~18 GB of prefetched batches), and
    each worker's piece is ready sooner, so the device starts earlier.

    Reliability: before each batch it checks for a stop request (utils/signals.py); it records
    the indices of unreadable images it skipped in `skipped` (cleared by the caller); a
    UserError (e.g. a DataError) raised in a worker reaches the caller as the worker's one-line message.
    """

    def __init__(self, dataset, batch_size: int, sampler, num_workers: int, device: torch.device, chunk: int = 32):
        self.sampler = sampler
        self.batch_size = batch_size
        self.device = device
        self.chunk = min(chunk, batch_size)
        self.batch_sampler = ChunkedBatchSampler(sampler, batch_size, self.chunk)
        self.skipped = set()  # dataset indices of unreadable images skipped since the caller cleared it
        self.loader = DataLoader(dataset, batch_sampler=self.batch_sampler, num_workers=num_workers,
                                 collate_fn=collate_skip_bad, pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers > 0 else None,
                                 worker_init_fn=start_worker if num_workers > 0 else None)

    def __len__(self) -> int:
        return len(self.batch_sampler.batches())

    def __iter__(self):
        sizes = [len(b) for b in self.batch_sampler.batches()]
        pieces, expected, batch_number = [], 0, 0
        check_stop()
        for piece in _unwrapped_errors(self.loader):
            if not pieces:
                expected = -(-sizes[batch_number] // self.chunk)
            pieces.append(piece)
            self.skipped.update(piece.skipped)
            if len(pieces) == expected:
                yield self._join(pieces)
                pieces, batch_number = [], batch_number + 1
                check_stop()

    def _join(self, pieces: list[Batch]) -> Batch:
        if len(pieces) == 1:
            return pieces[0]
        kept = [p for p in pieces if p.indices.numel() > 0]
        n_skipped = sum(p.n_skipped for p in pieces)
        skipped = tuple(i for p in pieces for i in p.skipped)
        if not kept:
            return Batch(torch.empty(0, dtype=torch.long), pieces[0].images, None, n_skipped, skipped)
        # Move each (pinned) piece to the device and join there: no extra host copy.
        images = torch.cat([p.images.to(self.device, non_blocking=True) for p in kept])
        labels = (torch.cat([p.labels.to(self.device, non_blocking=True) for p in kept])
                  if kept[0].labels is not None else None)
        return Batch(torch.cat([p.indices for p in kept]), images, labels, n_skipped, skipped)


def _unwrapped_errors(loader):
    """Iterate a DataLoader; a UserError from a worker is re-raised with its own message.

    DataLoader re-raises a worker's exception (same class) as 'Caught DataError in DataLoader
    worker process 0. Original Traceback ...'; the user should see the one line naming the file.
    """
    try:
        yield from loader
    except UserError as exc:
        raise type(exc)(worker_error_message(exc)) from None


def worker_error_message(exc: BaseException) -> str:
    """The original message of an exception re-raised by a DataLoader worker (else str(exc))."""
    text = str(exc)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1]
    name = type(exc).__name__
    for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def usable_workers(num_workers: int, device: torch.device) -> int:
    """--num_workers capped at the CPUs this process may use: more only adds memory and switching
    (and torch warns that it exceeds its 'suggested max number of worker'). Where the network runs
    on the CPU, workers only get the CPUs torch's threads leave free: on 2 cores running 2 threads,
    workers forked from the training process cost more (copy-on-write faults of its memory, cores
    shared with the network) than decoding in the main process does: a benchmark run took 79 s
    with 2 workers, 81 s with 1 and 70 s with none (docs/measurements.md). Fewer threads
    (OMP_NUM_THREADS) leave cores for workers. Which images a batch holds does not depend on it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    usable = min(num_workers, cpus)
    if device.type == "cpu":
        usable = min(usable, max(cpus - torch.get_num_threads(), 0))
        if usable < num_workers and not _SAID["workers"]:
            _SAID["workers"] = True
            logging.getLogger("picie").info(
                "--num_workers %d: %d DataLoader worker(s), since the network runs on the CPU with %d torch "
                "threads on %d CPUs; the main process decodes what workers would have (OMP_NUM_THREADS=N sets "
                "fewer threads)", num_workers, usable, torch.get_num_threads(), cpus)
    return usable


_SAID = {"workers": False}  # the workers line is logged once per process


def start_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C is the main process's to handle; bounded kept memory."""
    ignore_interrupts(worker_id)
    limit_worker_memory()


def make_loader(dataset, batch_size: int, sampler, num_workers: int, device: torch.device) -> PassLoader:
    """Loader of the toolkit: chunked loading, pinned memory on CUDA, persistent workers, at most
    one worker per usable CPU, on the CPU per CPU the network leaves free (usable_workers)."""
    return PassLoader(dataset, batch_size, sampler, usable_workers(num_workers, device), device)


def feed_pass(feeds: Sequence, loader, batch_features: Callable, desc: str,
              runtime: Runtime) -> None:
    """Run one pass of `loader`, feeding `batch_features(batch) -> [feats per feed]` to the feeds
    (modules/kmeans.py: OnlineKMeansFeed, or anything with add(feats, indices) and add_empty());
    batches with no readable image, and batches this rank lacks, are fed as empty, so that every
    DDP rank feeds as many batches."""
    n_local = 0
    for batch in runtime.bar(loader, desc):
        n_local += 1
        if batch.indices.numel() == 0:
            for feed in feeds:
                feed.add_empty()
            continue
        for feed, feats in zip(feeds, batch_features(batch), strict=True):
            feed.add(feats, batch.indices)
    for _ in range(dist.max_over_ranks(n_local) - n_local):
        for feed in feeds:
            feed.add_empty()
