"""One model trained by several processes together: PyTorch DDP (``devices`` > 1, ``aortic-root train --devices N``).

``train.train_fold`` hands a fold here when ``config.devices`` > 1. N processes are spawned (torch.multiprocessing),
rank r on ``cuda:r`` with the nccl backend when the run's device is CUDA, else on the CPU with gloo. Each process
holds a copy of the network wrapped in ``DistributedDataParallel``, which averages the gradients of every step.

How the work is split keeps the result that of one process with the same ``batch_size``:

- Every process draws the same global minibatches: an index loader with the run's shuffle generator, seeded from
  (seed, fold, epoch) as in ``train.py``, gives each process the minibatches the single-process loader would give.
- Process r takes the r-th contiguous share of each minibatch (:class:`ShardedBatches`), padded with a repeat of the
  minibatch's first item where the minibatch does not split evenly. The augmentation of an item is drawn from
  (dataset seed, epoch, item) (``data.LandmarkDataset``), so it does not matter which process makes it.
- The network runs on the share only. The loss is the loss of the whole minibatch: the processes exchange their
  maps and targets (all_gather), drop the padding, and each evaluates the loss function on the whole minibatch, the
  other processes' maps held constant. DDP's average of the gradients, times N, is then the gradient of one process
  on the whole minibatch: exact for every loss, also GLiP, whose OT term is normalised by the heatmap mass of the
  whole minibatch. Only floating-point rounding differs (Testing/training/test_distributed.py measures it).

Rank 0 alone validates and writes the fold's log.csv, best.pt, last.pt and done.json, the same files as one
process, so ``--resume`` continues either way. The second stage (``stage refine``) is not trained this way.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.inference import resolve_device
from AorticRootLandmarksLib.progress import progress_bar

from .checkpoints import (
    DONE,
    fold_finished,
    load_checkpoint,
    log_epoch,
    open_log,
    save_atomic,
    save_checkpoint,
    write_json,
)
from .config import TrainConfig
from .losses import make_loss
from .train import (  # the single-process steps, shared so that both ways train alike
    _finished_fold,
    _seed_epoch,
    _shuffled_loader,
    _train_epoch,
    build_network,
    stream_seed,
    validation_errors,
)

#: How long a process waits for the others (rank 0 validates between epochs while the rest wait).
TIMEOUT = datetime.timedelta(hours=2)


class ShardedBatches:
    """This process's share of each minibatch of `loader`, as ``(volume, points)`` batches of equal size.

    Args:
        loader: the single-process DataLoader (its dataset, batch size, collate function and shuffle generator).
        rank: this process, 0 .. world - 1.
        world: the number of processes.

    After each batch, ``counts`` holds the number of real items in each process's share (the rest is padding).
    """

    def __init__(self, loader: torch.utils.data.DataLoader, rank: int, world: int):
        self.dataset, self.collate = loader.dataset, loader.collate_fn
        # the same length, batch size and generator as `loader`: the same minibatches, in the same order
        self.indices = torch.utils.data.DataLoader(
            range(len(loader.dataset)), batch_size=loader.batch_size, shuffle=True, generator=loader.generator
        )
        self.rank, self.world, self.counts = rank, world, [0] * world

    def shares(self, minibatch: list[int]) -> list[list[int]]:
        """The contiguous shares of `minibatch`, one per process (the last ones may be short or empty)."""
        size = -(-len(minibatch) // self.world)
        return [minibatch[r * size : (r + 1) * size] for r in range(self.world)]

    def __iter__(self):
        for batch in self.indices:
            minibatch = batch.tolist()
            shares = self.shares(minibatch)
            self.counts = [len(share) for share in shares]
            padded = shares[self.rank] + minibatch[:1] * (len(shares[0]) - self.counts[self.rank])
            yield self.collate([self.dataset[i] for i in padded])

    def whole_minibatch(self, loss_fn):
        """`loss_fn` on the whole minibatch (gathered from every process), times the number of processes."""

        def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            whole = _gathered(prediction, self.counts), _gathered(target, self.counts)
            return loss_fn(*whole) * self.world

        return loss


def _gathered(tensor: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """The processes' shares of a minibatch (B_share, ...) -> (B, ...): this process's own share keeps its gradient,
    the others are constants; padding (beyond ``counts``) is dropped."""
    parts = [torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device) for _ in counts]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])


def train_fold_distributed(
    config: TrainConfig, train: list, val: list, folder: Path, device, fold: int = 0, resume: bool = False,
    on_epoch=None,
):
    """``train.train_fold`` on ``config.devices`` processes; the same arguments and result.

    Returns:
        (network with the best weights loaded on `device`, best validation median mm).

    Raises:
        InputError: more devices than CUDA devices; RuntimeError: a process failed (its last error line).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if resume and fold_finished(folder, config.epochs):
        return _finished_fold(config, folder, device)
    world = int(config.devices)
    if _uses_cuda(config) and torch.cuda.device_count() < world:
        raise InputError(f"devices = {world}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    queue = torch.multiprocessing.get_context("spawn").SimpleQueue()
    args = (world, _free_port(), config, train, val, folder, fold, resume, queue)
    context = torch.multiprocessing.start_processes(_worker, args, nprocs=world, join=False, start_method="spawn")
    try:
        while not _joined(context, fold):
            _pass_on(queue, on_epoch)
        _pass_on(queue, on_epoch)
    except BaseException:  # Ctrl-C, a failed process, or on_epoch stopping the run: no process is left behind
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        raise
    return _finished_fold(config, folder, device)


def _joined(context, fold: int) -> bool:
    """True once every process ended; a failed process becomes a RuntimeError naming its last error line."""
    try:
        return context.join(timeout=0.5)
    except (torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise RuntimeError(f"distributed training of fold {fold} failed: {lines[-1] if lines else err}") from None


def _pass_on(queue, on_epoch) -> None:
    """Hand rank 0's (fold, epoch, val_median_mm) reports to `on_epoch`."""
    while not queue.empty():
        report = queue.get()
        if on_epoch is not None:
            on_epoch(*report)


def _uses_cuda(config: TrainConfig) -> bool:
    return resolve_device(config.device).type == "cuda"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: TrainConfig, train, val, folder: Path, fold, resume, queue):
    """One process: join the group (nccl on cuda:rank, else gloo on the CPU), train, leave."""
    cuda = _uses_cuda(config)
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // world))
    address = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=address, rank=rank, world_size=world,
                            timeout=TIMEOUT)  # fmt: skip
    try:
        _train_rank(config, train, val, folder, device, fold, resume, queue)
    finally:
        dist.destroy_process_group()


def _train_rank(config: TrainConfig, train, val, folder: Path, device, fold: int, resume: bool, queue) -> None:
    """The epochs of one process; rank 0 also validates and writes the fold's files (as ``train.train_fold``)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(stream_seed(config.seed, fold))
    network = build_network(config).to(device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    state = {"epoch": -1, "steps": 0, "best_median": float("inf")}
    if resume and (folder / "last.pt").is_file():  # every rank loads it: the same weights and Adam state
        state = load_checkpoint(folder / "last.pt", network, optimizer, device)
    model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = make_loss(config.loss, config.penalty, config.penalty_target, config.ot_reduction)
    dataset, generator, loader = _shuffled_loader(config, train, fold)
    shards = ShardedBatches(loader, rank, world)
    first = state["epoch"] + 1
    bar = {"desc": f"fold {fold} ({world} processes)", "unit": "epoch", "initial": first, "total": config.epochs}
    log = open_log(folder / "log.csv", first) if rank == 0 else contextlib.nullcontext()
    with log as handle:
        for epoch in progress_bar(range(first, config.epochs), rank == 0, **bar):
            start = time.perf_counter()
            _seed_epoch(config.seed, fold, epoch, generator, dataset)
            losses = _train_epoch(model, optimizer, shards, shards.whole_minibatch(loss_fn), config, device, epoch)
            losses = [loss / world for loss in losses]  # each process computed the minibatch's loss times world
            if rank == 0:
                state = _close_epoch(network, optimizer, val, config, folder, device, handle, epoch, losses, state,
                                     start)  # fmt: skip
                queue.put((fold, epoch, state["median"]))
    if rank == 0:
        write_json({"best_median_mm": state["best_median"], "epochs": config.epochs}, folder / DONE)
    dist.barrier()


def _close_epoch(network, optimizer, val, config, folder: Path, device, handle, epoch, losses, state, start) -> dict:
    """Rank 0 after an epoch: validate, log, keep best.pt, write last.pt (in train_fold's order); the new state."""
    errors = validation_errors(network, val, config, device)
    log_epoch(handle, epoch, losses, errors, time.perf_counter() - start)
    median = float(np.median(errors))
    if median < state["best_median"]:
        save_atomic(network.state_dict(), folder / "best.pt")
    state = {"epoch": epoch, "steps": state["steps"] + len(losses), "best_median": min(median, state["best_median"])}
    save_checkpoint(folder, network, optimizer, state)
    return {**state, "median": median}
