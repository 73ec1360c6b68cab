"""Multi-rank runs over torch.distributed: joining the process group, and the few collectives that
keep N ranks equivalent to one rank on the same global batch.

Launchers. `torchrun --nproc_per_node=N train.py ...` exports RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT itself. A multi-task Slurm job (or submitit's local executor with
tasks_per_node > 1) does not: `setup` has submitit's TorchDistributedEnvironment derive them from
the job's environment first. `setup` then joins the process group (nccl on GPUs, gloo on CPU)
before anything else runs, and the Trainer (through accelerate) finds it initialised and uses it.

Single-process runs never initialise anything: every helper is then the identity, so they stay
bit-for-bit what they were without this module.

Seeds are the same on every rank, on purpose: DDP broadcasts rank 0's weights anyway, and the
length-grouped sampler draws its permutation from the global RNG, which must agree across ranks
for the ranks to split one permutation between them (data order is the sampler's job).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a rank waits for the others in one collective (or at start-up) before it gives up.
TIMEOUT = datetime.timedelta(minutes=30)
# What a collective says when another rank's process is gone or stalled (gloo's words; nccl
# raises DistError).
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out")
# The layout this process joined with (kept after the group is destroyed, for error messages).
_JOINED: Ranks | None = None


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def _export_submitit_env() -> None:
    """In a submitit job with several tasks, export the torch.distributed variables."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    import submitit

    if submitit.JobEnvironment().num_tasks <= 1:
        return
    # CUDA_VISIBLE_DEVICES stays as Slurm set it: each task picks cuda:LOCAL_RANK (torchrun's way).
    # overwrite: a requeued or nested job must take this job's layout, not an inherited one.
    submitit.helpers.TorchDistributedEnvironment().export(
        set_cuda_visible_devices=False, overwrite=True
    )


def environment() -> Ranks:
    """The rank layout the launcher gave this process (1 rank when it gave none)."""
    _export_submitit_env()
    return Ranks(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def setup(device: torch.device) -> torch.device:
    """Join the process group when the launcher started several ranks; returns this rank's device
    (cuda:LOCAL_RANK on GPUs). With one rank nothing happens and `device` comes back unchanged."""
    ranks = environment()
    if ranks.world_size <= 1 or is_distributed():
        return _rank_device(device, ranks)
    device = _rank_device(device, ranks)
    if device.type == "cuda":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world_size))
        if per_node > torch.cuda.device_count():
            raise StrategyError(
                f"{per_node} ranks on this node but {torch.cuda.device_count()} GPU(s) visible: "
                "one rank per GPU (hydra.launcher.tasks_per_node = gpus_per_node)"
            )
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    global _JOINED
    _JOINED = ranks
    _quiet_other_ranks(ranks.rank)
    log.info("rank %d of %d joined the %s process group", ranks.rank, ranks.world_size, backend)
    return device


def _rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    if device.type == "cuda" and ranks.world_size > 1:
        return torch.device("cuda", ranks.local_rank)
    return device


def _quiet_other_ranks(rank: int) -> None:
    """One log per job: ranks other than 0 keep only warnings and errors, prefixed with the rank
    (they write to the same train.log as rank 0)."""
    if rank == 0:
        return

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if not getattr(record, "rank_prefixed", False):  # one record may pass several handlers
            record.msg, record.rank_prefixed = f"[rank {rank}] {record.msg}", True
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(keep)


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def _comm_device() -> torch.device:
    """nccl only moves CUDA tensors; gloo only CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """The sum over ranks of `tensor` (a new tensor on tensor's device; `tensor` when alone)."""
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, group=group)
    return work.to(tensor.device)


def broadcast(obj: T, src: int = 0) -> T:
    """Rank `src`'s `obj` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def sum_logged(
    sums: dict[str, torch.Tensor], counts: dict[str, int]
) -> tuple[list[str], torch.Tensor]:
    """The trainer's logged sums and counts summed over ranks (counts in place): a logged mean
    is then the mean over the global batch, and tokens/s counts every rank's tokens. Names are
    sorted so that every rank packs the same order; steps are divided back by the world size
    (every rank counted the same optimizer steps)."""
    names = sorted(sums)
    device = sums[names[0]].device
    ns = torch.tensor([counts[name] for name in names], dtype=torch.float64, device=device)
    packed = torch.cat([torch.stack([sums[name].double() for name in names]), ns])
    packed = all_reduce_sum(packed)
    totals, reduced = packed[: len(names)], packed[len(names) :].tolist()
    for name, total in zip(names, reduced, strict=True):
        counts[name] = round(total)
    if "steps" in names:
        totals[names.index("steps")] /= world_size()
    return names, totals.float()


def main_first(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0, then on the other ranks (which find rank 0's caches). If rank 0
    fails, the others stop with its one-line reason instead of waiting forever."""
    if not is_distributed():
        return fn()
    if is_main():
        try:
            result = fn()
        except Exception as err:
            broadcast(f"{type(err).__name__}: {err}")
            raise
        broadcast(None)
        return result
    failure = broadcast(None)
    if failure is not None:
        raise RankZeroFailed(failure)
    return fn()


def trainer_args(strategy: str, model: torch.nn.Module) -> dict[str, Any]:
    """TrainingArguments for `strategy` (ddp or fsdp) in a multi-rank run; none for one rank."""
    if not is_distributed():
        return {}
    if strategy == "ddp":
        # Every trainable parameter (a LoRA factor) takes part in each forward, so DDP need not
        # search the graph for unused ones after every backward.
        return {"ddp_find_unused_parameters": False}
    if next(model.parameters()).device.type != "cuda":
        # torch's FSDP2 runs on gloo, but accelerate (the Trainer's engine) turns its FSDP plugin
        # on for GPU process groups only: on CPU the run would silently be plain DDP.
        raise StrategyError(
            "train.distributed=fsdp needs CUDA GPUs (accelerate enables the Trainer's FSDP only "
            "on GPU ranks); use train.distributed=ddp on CPU"
        )
    return fsdp_args(fsdp_layer_class(model))


def fsdp_args(layer_class: str) -> dict[str, Any]:
    """The Trainer's FSDP2 arguments: a full-shard auto-wrap policy on the decoder layer class."""
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": [layer_class],
            "reshard_after_forward": True,  # full shard: parameters regathered for backward
            # The adapter and checkpoints are written whole by rank 0, as without FSDP.
            "state_dict_type": "FULL_STATE_DICT",
        },
    }


def fsdp_layer_class(model: torch.nn.Module) -> str:
    """The decoder layer class FSDP shards one unit at a time (the model's `_no_split_modules`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    present = {type(m).__name__ for m in model.modules()}
    layers = [n for n in getattr(base, "_no_split_modules", None) or [] if n in present]
    if not layers:
        raise StrategyError(
            f"train.distributed=fsdp cannot wrap {type(base).__name__}: it names no decoder layer "
            "class (_no_split_modules) to shard; use train.distributed=ddp"
        )
    return layers[0]


class StrategyError(ValueError):
    """train.distributed asks for something this model or machine cannot do."""


class RankZeroFailed(RuntimeError):
    """Rank 0 failed in a step the other ranks were waiting on."""


def failure_line(err: BaseException) -> str | None:
    """One line for an error caused by another rank (a collective that lost its peer, a timeout,
    a failure on rank 0); None for errors that are this rank's own."""
    if _JOINED is None:
        return None
    if isinstance(err, RankZeroFailed):
        return f"rank {_JOINED.rank}: rank 0 failed: {err}"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if not (isinstance(err, dist.DistError) or any(s in text for s in _PEER_GONE)):
        return None
    return (
        f"rank {_JOINED.rank} of {_JOINED.world_size}: another rank of this job stopped "
        f"(its own log says why); the collective failed with: {text}"
    )
