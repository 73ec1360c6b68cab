"""The AlignX-repro model for inference: the axis experts mixed by the calibrated MoCaE weights.

For each new input the weights come from the base model's mean-pooled last hidden state over
the input (experts off), then

- `mix=adapters`: one forward in which every LoRA layer adds sum_a gamma w_a B_a A_a x; the
  weights stay fixed while `generate` extends the sequence (KV cache as usual);
- `mix=logits`: one forward per expert (gamma * its delta), logits (and hidden states)
  combined as sum_a w_a (.)_a. `generate` then runs its own decoding loop, one KV cache per
  expert, with the weights of the prompt.

`disable_adapter()` gives the base model, `save_pretrained` the experts, the MoCaE state and the
mixing settings (alignx.json), so evaluate.py can rebuild the model from a run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.generation import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.modeling_outputs import CausalLMOutputWithPast

from alignment.alignx.experts import ExpertsExtension
from alignment.alignx.latent import mean_pool
from alignment.alignx.mixing import mix_logits
from alignment.alignx.mocae import Mocae, save_mocae

MIXES = ("logits", "adapters")
SETTINGS_FILE = "alignx.json"


@dataclass(frozen=True)
class MixSettings:
    """How the experts are combined at inference (alignx.* keys of the same names)."""

    axes: tuple[str, ...]
    mix: str = "logits"
    temperature: float = 1.0
    lambda1: float = 0.6
    lambda2: float = 0.4
    combine: str = "product"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"alignx.mix must be one of {MIXES}, got {self.mix!r}")


class AlignxModel(nn.Module):
    def __init__(self, experts: nn.Module, mocae: Mocae, settings: MixSettings) -> None:
        super().__init__()
        self.model, self.mocae, self.settings = experts, mocae.to(_device(experts)), settings
        self.experts = ExpertsExtension(list(settings.axes)).attach(experts)
        self.last_weights: torch.Tensor | None = None  # (B, A) of the latest new input

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return _device(self.model)

    @torch.no_grad()
    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Calibrated expert weights (B, A) from the base model's pooled state of the input."""
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        self.experts.coeffs = torch.zeros(len(self.settings.axes), device=input_ids.device)
        out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        pooled = mean_pool(out.hidden_states[-1].float(), mask)
        s = self.settings
        weights = self.mocae.weights(pooled, s.temperature, s.lambda1, s.lambda2, s.combine)
        self.last_weights = weights
        return weights

    def forward(self, input_ids: torch.Tensor, attention_mask=None, **kwargs: Any):
        base = not self.experts.attached  # inside disable_adapter()
        # A continuation of a cached sequence keeps the weights routed on its first part.
        cached = any(kwargs.get(k) is not None for k in ("cache", "past_key_values"))
        if base or (cached and self.settings.mix == "adapters"):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        weights = self.route(input_ids, attention_mask)
        gamma = self.settings.gamma
        if self.settings.mix == "adapters":
            self.experts.coeffs = gamma * weights
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if cached:  # one cache cannot hold A experts' states: see generate
            raise ValueError("AlignX-repro mix=logits runs full sequences (generate() caches)")
        kwargs = {**kwargs, "use_cache": False}
        outs = []
        for a in range(len(self.settings.axes)):
            coeffs = torch.zeros(len(self.settings.axes), device=input_ids.device)
            coeffs[a] = gamma
            self.experts.coeffs = coeffs
            outs.append(self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs))
        return _mixed_output(outs, weights)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask=None, **kwargs: Any):
        if not self.experts.attached:  # inside disable_adapter(): the base model
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self.settings.mix == "adapters":
            self.experts.coeffs = self.settings.gamma * self.route(input_ids, attention_mask)
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return _generate_mixed(self, input_ids, attention_mask, **kwargs)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """The base model inside the block (all expert coefficients zero, no routing)."""
        self.experts.remove()
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self.experts.attach(self.model)

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        save_mocae(self.mocae, directory)
        (directory / SETTINGS_FILE).write_text(json.dumps(asdict(self.settings), indent=2))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _mixed_output(outs: list, weights: torch.Tensor) -> CausalLMOutputWithPast:
    logits = mix_logits(torch.stack([o.logits for o in outs]), weights)
    hidden = None
    if outs[0].hidden_states is not None:  # the same weighted sum, layer by layer
        hidden = tuple(
            mix_logits(torch.stack([o.hidden_states[i] for o in outs]), weights)
            for i in range(len(outs[0].hidden_states))
        )
    return CausalLMOutputWithPast(logits=logits, hidden_states=hidden)


def _generate_mixed(
    model: AlignxModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    pad_token_id: int | None = None,
    eos_token_id: int | None = None,
    **_: Any,
) -> torch.Tensor:
    """Greedy or sampled decoding for mix=logits with the prompt's weights: each expert keeps
    its own KV cache, so a new token costs one single-position forward per expert (left padding
    is handled through position ids)."""
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    eos = eos_token_id if eos_token_id is not None else model.config.eos_token_id
    eos = torch.tensor(sorted(eos) if isinstance(eos, list) else [eos], device=input_ids.device)
    pad = pad_token_id if pad_token_id is not None else int(eos[0])
    warp = LogitsProcessorList()
    if do_sample:
        warp += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]
    weights, n_axes = model.route(input_ids, mask), len(model.settings.axes)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    ids, step_ids, caches = input_ids, input_ids, [None] * n_axes
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
        logits = []
        for a in range(n_axes):
            model.experts.coeffs = model.settings.gamma * torch.eye(n_axes, device=ids.device)[a]
            kwargs = {"cache": caches[a], "use_cache": True, "position_ids": positions}
            out = model.model(input_ids=step_ids, attention_mask=mask, **kwargs)
            caches[a] = out.cache
            logits.append(out.logits[:, -1:])
        scores = warp(ids, mix_logits(torch.stack(logits), weights)[:, -1].float())
        if do_sample:
            token = torch.multinomial(torch.softmax(scores, -1), 1).squeeze(-1)
        else:
            token = scores.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        ids, step_ids = torch.cat([ids, token[:, None]], dim=1), token[:, None]
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        done |= torch.isin(token, eos)
        if bool(done.all()):
            break
    return ids


def load_alignx_model(model_cfg, cache_dir: str, device: torch.device, saved: Path) -> AlignxModel:
    """The AlignX-repro model saved by AlignxModel.save_pretrained, frozen, for evaluation."""
    from alignment.alignx.experts import load_experts
    from alignment.alignx.mocae import load_mocae

    path = saved / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"AlignX-repro settings not found: {path}")
    raw = json.loads(path.read_text())
    settings = MixSettings(**{**raw, "axes": tuple(raw["axes"])})
    experts = load_experts(model_cfg, cache_dir, device, list(settings.axes), saved, False)
    return AlignxModel(experts, load_mocae(saved), settings).eval()
