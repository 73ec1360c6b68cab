"""The per-token axis attention of MAC on a few prompts, as numbers and as a heatmap figure.

For every token the circuit computes a 3x3 attention over the axes (query axis -> key axis). The
figure shows, per prompt, the nine weights (rows: "help->harm", ...) for each token (columns), so
one can see which axis each token's steering draws on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from alignment.models.mac import MacSteering

AXIS_SHORT = ("help", "harm", "honest")


@dataclass(frozen=True)
class AxisAttention:
    """One prompt: its tokens and the axis attention of one layer, weights (S, A, A)."""

    prompt: str
    tokens: list[str]
    weights: torch.Tensor


@torch.no_grad()
def collect_axis_attention(
    model: torch.nn.Module, steering: MacSteering, tokenizer, prompts: list[str], layer: int
) -> list[AxisAttention]:
    """Run each chat-formatted prompt once and keep the layer's axis attention per token."""
    if not steering.attached:
        raise RuntimeError("attach the MAC circuit before collecting its attention")
    was_training, recording = model.training, steering.record_attention
    model.eval()
    steering.record_attention = True
    rows = []
    try:
        for prompt in prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
            device = next(model.parameters()).device
            model(**ids.to(device), use_cache=False)
            weights = steering.attention[layer][0].float().cpu()  # (S, A, A)
            # Each token as the text it stands for (byte-level BPE pieces are unreadable).
            tokens = [repr(tokenizer.decode([i]))[1:-1] for i in ids["input_ids"][0].tolist()]
            rows.append(AxisAttention(prompt, tokens, weights))
    finally:
        steering.record_attention = recording
        steering.attention.clear()
        model.train(was_training)
    return rows


def heatmap_figure(rows: list[AxisAttention], path: Path, title: str) -> Path:
    """One panel per prompt: the nine query->key weights (rows) for each token (columns)."""
    labels = [f"{q}->{k}" for q in AXIS_SHORT for k in AXIS_SHORT]
    width = max(6.0, 0.22 * max(len(r.tokens) for r in rows) + 2)
    fig = Figure(figsize=(width, 2.6 * len(rows)))
    for n, row in enumerate(rows, start=1):
        ax = fig.add_subplot(len(rows), 1, n)
        grid = row.weights.reshape(len(row.tokens), -1).T.numpy()  # (A*A, S)
        image = ax.imshow(grid, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xticks(range(len(row.tokens)), row.tokens, fontsize=5, rotation=90)
        ax.set_title(row.prompt[:90], fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
