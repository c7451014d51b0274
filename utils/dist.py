"""Distributed helpers (torchrun + DistributedDataParallel); all are no-ops in one process.

Every pass over data is sharded by `EpochSampler`, whose order depends only on (seed, epoch),
so the per-(epoch, image) transform draws are the same whatever the number of ranks.
"""
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device_type: str) -> int | None:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on the CPU).

    Returns the local rank, or None when not launched by torchrun.
    """
    if not launched_by_torchrun():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    # A finite timeout turns a rank that died or hangs into an error instead of a silent hang.
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return local_rank


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; float64 stays float64)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of every rank (they may differ in length)."""
    if not is_distributed():
        return tensor
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(n)] for g, n in zip(gathered, lengths, strict=True)])


def local_batch(global_batch: int) -> int:
    """This rank's share of a global batch size (rounded up)."""
    return max(1, -(-global_batch // world_size()))


def any_over_ranks(flag: bool) -> bool:
    """True if `flag` is true on any rank (decisions every rank must take together)."""
    return bool(max_over_ranks(int(flag))) if is_distributed() else bool(flag)


def max_over_ranks(value: int) -> int:
    """The largest of an integer over ranks (e.g. batch counts, so every rank joins every collective)."""
    if not is_distributed():
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def max_diff_from_rank0(tensor: torch.Tensor) -> float:
    """Largest |difference| between this rank's tensor and rank 0's, over all ranks (0.0 alone).
    A cheap check that state meant to be identical (centroids) really is."""
    if not is_distributed():
        return 0.0
    reference = tensor.detach().clone()
    dist.broadcast(reference, 0)
    diff = (tensor.detach() - reference).abs().max().reshape(1).double()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so that passes
    in eval mode compute the same features on every rank."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world_size())


class EpochSampler(Sampler):
    """Indices of this rank for one pass over `n_items` images in `epoch`.

    The images of a rank (its shard) depend only on (seed, epoch): a seeded permutation split
    round-robin over ranks, so the clustering pass and the training pass of an epoch give each
    rank the same images and every rank trains on the pseudo-labels it computed. Within the
    shard, `order` = "shard" keeps the shard order, "shuffle" reshuffles it (training) and
    `shuffle=False` gives 0..n-1 split over ranks (evaluation). `pad` repeats the first indices
    so that every rank gets the same count; `even` instead drops the last image of the ranks that
    have one more (training under DDP: ranks must run the same number of steps, and a rank only
    holds pseudo-labels of its own shard).
    """

    def __init__(self, n_items: int, seed: int, epoch: int = 0, shuffle: bool = True,
                 reshuffle: bool = False, pad: bool = False, even: bool = False):
        self.n_items = n_items
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.reshuffle = reshuffle
        self.pad = pad
        self.even = even

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n_items, generator=generator).tolist()
        else:
            order = list(range(self.n_items))
        if self.pad and self.n_items % world_size():
            order = order + order[: world_size() - self.n_items % world_size()]
        shard = order[rank():: world_size()]
        if self.even:
            shard = shard[: len(order) // world_size()]  # drop the <= 1 extra image of some ranks
        if self.reshuffle:
            generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch + 7919 * 100003)
            shard = [shard[i] for i in torch.randperm(len(shard), generator=generator).tolist()]
        return shard

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return len(self.indices())
