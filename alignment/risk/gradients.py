"""Per-sample gradients of a loss over the selected parameters: torch.func (vmap) or a loop.

A loss function has the signature `loss_fn(model, batch) -> scalar tensor`, where `model` is
called as `model(**kwargs)` and `batch` is a dict whose tensors share a leading sample dimension
(non-tensors, such as an int, are shared by every sample). Both backends hand the loss a batch of
one sample, so the same function serves both.

Memory: gradients are written row by row into one preallocated (m, n) fp32 matrix G on the CPU.
Besides G, at most one sample batch's per-sample gradients ((batch, n), the vmap output) exist at
a time: one extra copy per sample batch, never a list of rows stacked at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from alignment.risk.params import RiskInputError, Selection

log = logging.getLogger(__name__)
LossFn = Callable[[Callable[..., Any], dict], torch.Tensor]
BACKENDS = ("auto", "vmap", "loop")


def math_attention():
    """Only the math SDPA kernel has vmap batching rules and a double backward (the HVP); the
    fused CPU/CUDA kernels have neither (vmap would fall back to a slow per-sample loop)."""
    return sdpa_kernel(SDPBackend.MATH)


def batch_rows(batch: dict) -> int:
    """The number of samples: the leading dimension of the first tensor with one."""
    for value in batch.values():
        if torch.is_tensor(value) and value.ndim > 0:
            return int(value.shape[0])
    raise ValueError("a batch needs at least one tensor with a sample dimension")


def take(batch: dict, start: int, end: int) -> dict:
    return {k: v[start:end] if torch.is_tensor(v) and v.ndim > 0 else v for k, v in batch.items()}


def _scalar(loss: torch.Tensor) -> torch.Tensor:
    return loss.mean() if loss.ndim > 0 else loss


def _loop_rows(model, selection: Selection, batch: dict, loss_fn: LossFn, rows: int):
    """Yield (row, per-parameter gradients) for the first `rows` samples, one backward each."""
    for i in range(rows):
        loss = _scalar(loss_fn(model, take(batch, i, i + 1)))
        yield i, torch.autograd.grad(loss, selection.params, allow_unused=True)


def _vmap_fn(model: torch.nn.Module, selection: Selection, loss_fn: LossFn, batch: dict):
    """vmap(grad(per-sample loss)) over the batch's sample dimension."""
    names = selection.names

    def one(values: tuple[torch.Tensor, ...], sample: dict) -> torch.Tensor:
        params = dict(zip(names, values, strict=True))

        def forward(*args, **kwargs):
            return functional_call(model, params, args=args, kwargs=kwargs)

        # vmap strips the sample dimension; give the loss the batch of one it expects.
        one_batch = {k: v.unsqueeze(0) if torch.is_tensor(v) else v for k, v in sample.items()}
        return _scalar(loss_fn(forward, one_batch))

    in_dims = {k: 0 if torch.is_tensor(v) and v.ndim > 0 else None for k, v in batch.items()}
    return vmap(grad(one), in_dims=(None, in_dims))


def _vmap_rows(model, selection: Selection, batch: dict, loss_fn: LossFn, rows: int):
    values = tuple(p.detach() for p in selection.params)
    fn = _vmap_fn(model, selection, loss_fn, batch)
    # torch.func.grad ignores an outer no_grad; no_grad stops the ordinary autograd graph.
    with torch.no_grad():
        return fn(values, take(batch, 0, rows))


def _write(G: torch.Tensor, row: slice, selection: Selection, grads: Sequence[torch.Tensor | None]):
    """Copy per-parameter gradients ((k, *shape) or (*shape)) into rows of G, block by block."""
    width = row.stop - row.start
    for s, g in zip(selection.slices, grads, strict=True):
        if g is None:
            G[row, s.start : s.end] = 0.0
        else:
            G[row, s.start : s.end] = g.detach().reshape(width, -1).to(G.dtype)


def choose_backend(
    model,
    selection: Selection,
    batch: dict,
    loss_fn: LossFn,
    *,
    probe: int = 2,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> tuple[str, str]:
    """('vmap' | 'loop', reason): vmap when it runs and equals the loop on the first samples."""
    rows = min(probe, batch_rows(batch))
    n = selection.numel
    loop_g, vmap_g = torch.empty(rows, n), torch.empty(rows, n)
    for i, grads in _loop_rows(model, selection, batch, loss_fn, rows):
        _write(loop_g, slice(i, i + 1), selection, grads)
    try:
        grads = _vmap_rows(model, selection, batch, loss_fn, rows)
        _write(vmap_g, slice(0, rows), selection, grads)
    except Exception as err:  # any op without a batching rule, data-dependent control flow, ...
        return "loop", f"vmap failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    if not torch.allclose(loop_g, vmap_g, atol=atol, rtol=rtol):
        diff = (loop_g - vmap_g).abs().max().item()
        return "loop", f"vmap differs from the loop by {diff:.3g} on the probe samples"
    return "vmap", f"vmap equals the loop on {rows} probe samples"


def per_sample_gradients(
    model: torch.nn.Module,
    selection: Selection,
    batches: Sequence[dict],
    loss_fn: LossFn,
    *,
    max_samples: int = 128,
    backend: str = "auto",
    progress: bool = True,
) -> tuple[torch.Tensor, str]:
    """G (m, n) fp32 on the CPU, m = min(max_samples, samples in `batches`), and the backend used.

    The model is in eval mode and attention on the math kernel for the duration. backend: `vmap`
    (torch.func), `loop` (one backward per sample) or `auto` (vmap if it runs and matches the
    loop on two samples).
    """
    if backend not in BACKENDS:
        raise RiskInputError(f"risk.backend must be one of {BACKENDS}, got {backend!r}")
    total = min(max_samples, sum(batch_rows(b) for b in batches))
    if total == 0:
        raise RiskInputError("risk.safety: the safety data gave no preference pairs")
    G = torch.empty(total, selection.numel, dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        with math_attention():
            if backend == "auto":
                backend, reason = choose_backend(model, selection, batches[0], loss_fn)
                log.info("risk: per-sample gradients by %s (%s)", backend, reason)
            _fill(G, model, selection, batches, loss_fn, backend, progress)
    finally:
        model.train(was_training)
    return G, backend


def _fill(G, model, selection, batches, loss_fn, backend: str, progress: bool) -> None:
    total, done = G.shape[0], 0
    bar = tqdm(total=total, desc="risk: per-sample gradients", unit="pair", disable=not progress)
    with bar:
        for batch in batches:
            rows = min(batch_rows(batch), total - done)
            if rows <= 0:
                break
            if backend == "vmap":
                grads = _vmap_rows(model, selection, batch, loss_fn, rows)
                _write(G, slice(done, done + rows), selection, grads)
            else:
                for i, grads in _loop_rows(model, selection, batch, loss_fn, rows):
                    _write(G, slice(done + i, done + i + 1), selection, grads)
            done += rows
            bar.update(rows)
