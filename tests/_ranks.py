"""What tests/test_distributed.py runs inside two spawned gloo ranks: kept apart, with few
imports, so that each spawned process starts quickly."""

from __future__ import annotations

import os
import socket

import torch

from alignment import distributed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lora_layer():
    """One LoRA linear layer (6 -> 5, r = 3), B non-zero so that v = g_y B is not zero."""
    import peft

    torch.manual_seed(0)
    model = peft.get_peft_model(
        torch.nn.Sequential(torch.nn.Linear(6, 5)),
        peft.LoraConfig(r=3, lora_alpha=6, target_modules=["0"]),
    )
    with torch.no_grad():
        model.base_model.model[0].lora_B["default"].weight.normal_()
    return model


def grit_factors(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Σ_a, Σ_g, their token counts and the loss history after two steps on a global batch of
    4 rows (each step a different batch), this rank seeing rows [rank*4/world, (rank+1)*4/world)
    and averaging its loss over them (as under DDP)."""
    from alignment.optim.grit import GritHParams, GritPreconditioner

    model = lora_layer()
    pre = GritPreconditioner(model, GritHParams(cov_update_freq=1, kfac_min_samples=0))
    share = slice(rank * 4 // world, (rank + 1) * 4 // world)
    for step in range(2):
        x = torch.randn(4, 7, 6, generator=torch.Generator().manual_seed(step))[share]
        loss = model(x).square().sum(-1).mean()
        pre.observe_loss(loss.detach())
        loss.backward()
        pre.sched.flush_loss()
    group = pre.groups[0]
    return {
        "cov_a": group.cov_a.clone(),
        "cov_g": group.cov_g.clone(),
        "n_a": group.n_a.clone(),
        "n_g": group.n_g.clone(),
        "losses": pre.sched.ordered_losses().clone(),
    }


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    device = distributed.setup(torch.device("cpu"))
    results: dict = {"device": str(device), "grit": grit_factors(rank, world)}
    counts = {"a": 2, "steps": 4}
    names, totals = distributed.sum_logged(
        {"steps": torch.tensor(2.0), "a": torch.tensor(float(rank + 1))}, counts
    )
    results["logged"] = (names, totals.tolist(), counts)

    def fails_on_rank_zero():
        if distributed.is_main():
            raise ValueError("bad row 3")
        return "ran"

    try:
        results["main_first"] = distributed.main_first(fails_on_rank_zero)
    except Exception as err:
        results["main_first"] = distributed.failure_line(err) or f"own error: {err}"
    results["broadcast"] = distributed.broadcast({"rank": rank})
    torch.save(results, f"{out}/rank{rank}.pt")
    distributed.shutdown()
