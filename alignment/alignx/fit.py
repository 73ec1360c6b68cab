"""Fitting AlignX-repro's small modules on pooled prompt states: the latent projector (stage 1),
the router and the calibrators' statistics (stage 2).

Prompt states are the base model's last hidden states (experts off), mean-pooled over the prompt
tokens only (not the answer): at inference the router sees nothing else. They are computed once
and cached in memory; each fit is then a few hundred full-batch AdamW steps on a (N, H) matrix,
seconds even for a 7B model's H = 4096, so a resumed stage 2 simply fits again from its seed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import nn

from alignment.alignx.latent import mean_pool


def _adapters_off(model):
    return (
        model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    )


@torch.no_grad()
def prompt_states(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled (N, H) float32 on CPU, axis (N,)) for AxisCollator batches.

    The prompt is where labels are -100 inside the attention mask (right padding).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pooled, axes = [], []
    try:
        for batch in batches:
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            prompt = mask.bool() & (batch["labels"].to(device) == -100)
            with _adapters_off(model):  # logits_to_keep=1: the LM head is not needed here
                out = model(
                    input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1
                )
            pooled.append(mean_pool(out.hidden_states[-1].float(), prompt).cpu())
            axes.append(batch["axis"].cpu())
    finally:
        model.train(was_training)
    return torch.cat(pooled), torch.cat(axes)


def fit_classifier(
    forward: nn.Module,
    logits_of,
    pooled: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.01,
    seed: int = 0,
) -> list[float]:
    """Full-batch AdamW on class-balanced cross-entropy(logits_of(pooled), labels) over
    `forward`'s trainable parameters (each axis weighs the same whatever its row count); returns
    the loss of every step. Deterministic given `seed` (the global RNG is left as it was)."""
    params = [p for p in forward.parameters() if p.requires_grad]
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1).float()
    weight = counts.sum() / (len(counts) * counts.clamp(min=1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        losses = []
        forward.train()
        for _ in range(steps):
            loss = nn.functional.cross_entropy(logits_of(pooled), labels, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        forward.eval()
    return losses


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Balanced accuracy: the mean over the labels present of the share of their rows whose
    argmax is the label (chance is 1 / number of labels, whatever the class sizes)."""
    hit = (logits.argmax(-1) == labels).float()
    recalls = [hit[labels == a].mean() for a in labels.unique()]
    return float(torch.stack(recalls).mean())


def fit_projector(mocae, pooled: torch.Tensor, labels: torch.Tensor, **kw) -> list[float]:
    """Stage 1: the scaler, then P and its axis head by axis classification."""
    mocae.fit_scaler(pooled)
    module = nn.ModuleList([mocae.projector])
    return fit_classifier(
        module, lambda x: mocae.projector.axis_logits(mocae.latent(x)), pooled, labels, **kw
    )


def fit_router(mocae, pooled: torch.Tensor, labels: torch.Tensor, **kw) -> list[float]:
    """Stage 2: the router by axis classification, then the calibrators' statistics."""
    losses = fit_classifier(mocae.router, mocae.route_logits, pooled, labels, **kw)
    mocae.fit_calibrators(pooled, labels)
    return losses
