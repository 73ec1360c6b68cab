"""MAC, the Mechanistic Alignment Circuit: a small steering module added at a decoder layer.

The circuit (spec/mac.md section 1) reads a hidden state h (B, S, H) at one layer:

    m_a    = Linear_a(H -> H, bias)(h)             for the axes a in (help, harm, honest)
    M      = stack(m_help, m_harm, m_honest)        (B, S, 3, H)
    q,k,v  = Linear(H -> d, no bias)(M)             shared over the axes, d = head_dim = 64
    attn   = softmax(q k^T / sqrt(d))               (B, S, 3, 3): a 3x3 attention per token
    out    = Linear(3d -> H, no bias)((attn v).reshape(B, S, 3d))

and `out`, the steering vector, is added back where h was read. `MacSteering` holds one circuit
per configured layer and attaches them with forward hooks:

- site `attn_out` (the reference): a hook on the layer's `self_attn` replaces its output a with
  a + MAC(a), so the decoder layer adds both to the residual stream (h <- h + a + MAC(a));
- site `residual_post`: a hook on the decoder layer adds MAC(h) to its output h.

The circuit's weights stay fp32 while a quantised base computes in bf16: the hook casts its
input up and the steering vector back down. The reference also declares an `axis_embeddings`
(3 x H) tensor that it never uses; it is left out (the parameter count below excludes it too).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from alignment.axes import AXES
from alignment.methods.registry import MethodSetupError

SITES = ("attn_out", "residual_post")
MODES = ("standard", "generic", "frozen")


def mac_parameter_count(hidden: int, head_dim: int = 64, n_axes: int = 3) -> int:
    """Trainable parameters of one circuit: n_axes (H^2 + H) + 3 d H + n_axes d H.

    For H = 4096, d = 64, 3 axes: 50,343,936 + 786,432 + 786,432 = 51,916,800 (the spec's 51.9 M).
    """
    return n_axes * (hidden * hidden + hidden) + 3 * head_dim * hidden + n_axes * head_dim * hidden


def axis_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token attention over the axes.

    Shapes: q, k, v (..., A, d) -> mixed values (..., A, d), weights (..., A, A); rows of the
    weights sum to 1 (softmax over the key axis).
    """
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights


class MechanisticAlignmentCircuit(nn.Module):
    """One MAC (spec/mac.md section 1) for hidden size `hidden`.

    Args:
        head_dim: width d of the shared q/k/v projections (64 in the reference).
        zero_init_out_proj: start out_proj at zero, so the steered model equals the base model
            at step 0 (the reference uses the default init and deviates from the base at once).
        mode: `standard`; `generic`, the reference's ablation label, whose code is identical to
            standard (kept so its runs can be reproduced under their name); `frozen`, q/k/v keep
            their random init and do not train.
    """

    def __init__(
        self,
        hidden: int,
        head_dim: int = 64,
        n_axes: int = len(AXES),
        zero_init_out_proj: bool = False,
        mode: str = "standard",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"method.mode must be one of {MODES}, got {mode!r}")
        if hidden < 1 or head_dim < 1 or n_axes < 1:
            raise ValueError(f"MAC sizes must be >= 1, got H={hidden}, d={head_dim}, A={n_axes}")
        self.hidden, self.head_dim, self.n_axes, self.mode = hidden, head_dim, n_axes, mode
        self.axis_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_axes))
        self.q_proj = nn.Linear(hidden, head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, head_dim, bias=False)
        self.out_proj = nn.Linear(n_axes * head_dim, hidden, bias=False)
        if zero_init_out_proj:
            nn.init.zeros_(self.out_proj.weight)
        if mode == "frozen":
            for proj in (self.q_proj, self.k_proj, self.v_proj):
                proj.requires_grad_(False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, S, H) -> steering vector (B, S, H) and axis attention weights (B, S, A, A)."""
        m = torch.stack([proj(h) for proj in self.axis_proj], dim=-2)  # (B, S, A, H)
        mixed, weights = axis_attention(self.q_proj(m), self.k_proj(m), self.v_proj(m))
        return self.out_proj(mixed.flatten(-2)), weights


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM, also through a peft wrapper (`.get_base_model()`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = base.get_decoder() if hasattr(base, "get_decoder") else base
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(base).__name__} has no decoder `layers` list to attach MAC to")
    return layers


class CircuitLayerError(MethodSetupError):
    """method.layers names a decoder layer the model does not have; one line."""


def check_layers(layers: list[int], n_layers: int, key: str = "method.layers") -> None:
    """One line naming the config key when a layer index does not exist in the model."""
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise CircuitLayerError(
            f"{key}={list(layers)}: layer {bad[0]} does not exist, the model has {n_layers} "
            f"decoder layers (0..{n_layers - 1}); set {key} to layers in that range"
        )
    if len(set(layers)) != len(layers):
        raise CircuitLayerError(f"{key}={list(layers)} names a layer twice")


class MacSteering(nn.Module):
    """One circuit per layer, attached by forward hooks; `remove()` undoes everything.

    After a forward with `record_attention = True`, `attention[layer]` holds that layer's axis
    attention weights (B, S, A, A), detached, for heatmaps.
    """

    def __init__(
        self,
        hidden: int,
        layers: list[int],
        site: str = "attn_out",
        head_dim: int = 64,
        zero_init_out_proj: bool = False,
        mode: str = "standard",
    ) -> None:
        super().__init__()
        if site not in SITES:
            raise ValueError(f"method.site must be one of {SITES}, got {site!r}")
        if not layers:
            raise ValueError("method.layers must name at least one decoder layer")
        self.layers, self.site = list(layers), site
        self._settings = {"hidden": hidden, "layers": self.layers, "site": site}
        self._settings |= {"head_dim": head_dim, "mode": mode}
        self.circuits = nn.ModuleDict(
            {
                str(i): MechanisticAlignmentCircuit(
                    hidden, head_dim, len(AXES), zero_init_out_proj, mode
                )
                for i in self.layers
            }
        )
        self.record_attention = False
        self.attention: dict[int, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def settings(self) -> dict:
        """The constructor arguments that fix the weights' shapes and behaviour."""
        return dict(self._settings)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, model: nn.Module) -> MacSteering:
        """Hook every circuit into `model` (moved to its layer's device); raises if attached."""
        if self._handles:
            raise RuntimeError("this MacSteering is already attached; remove() it first")
        decoder = decoder_layers(model)
        check_layers(self.layers, len(decoder))
        for i in self.layers:
            layer = decoder[i]
            target = layer.self_attn if self.site == "attn_out" else layer
            device = next(layer.parameters()).device
            self.circuits[str(i)].to(device)
            self._handles.append(target.register_forward_hook(self._hook(i)))
        return self

    def save(self, directory: Path) -> Path:
        return save_steering(self, directory)

    def remove(self) -> None:
        """Detach every hook; the model is then exactly the base model again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.attention.clear()

    def _hook(self, layer: int):
        circuit = self.circuits[str(layer)]

        def add_steering(module: nn.Module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            dtype = circuit.out_proj.weight.dtype
            steer, weights = circuit(hidden.to(dtype))
            if self.record_attention:
                self.attention[layer] = weights.detach()
            steered = hidden + steer.to(hidden.dtype)
            return (steered, *output[1:]) if isinstance(output, tuple) else steered

        return add_steering


CIRCUIT_FILE, CIRCUIT_CONFIG = "mac_circuit.safetensors", "mac_config.json"


def save_steering(steering: MacSteering, directory: Path) -> Path:
    """Write the circuits' weights (safetensors) and their shape settings (JSON) to `directory`."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in steering.state_dict().items()}
    save_file(state, str(directory / CIRCUIT_FILE))
    (directory / CIRCUIT_CONFIG).write_text(json.dumps(steering.settings(), indent=2))
    return directory


def load_steering(directory: Path) -> MacSteering:
    """A MacSteering rebuilt from `save_steering`'s files (not attached)."""
    from safetensors.torch import load_file

    config, weights = directory / CIRCUIT_CONFIG, directory / CIRCUIT_FILE
    for path in (config, weights):
        if not path.is_file():
            raise FileNotFoundError(f"MAC circuit file not found: {path}")
    steering = MacSteering(**json.loads(config.read_text()))
    steering.load_state_dict(load_file(str(weights)))
    return steering


def build_mac_model(
    model_cfg,
    cache_dir: str,
    device: torch.device,
    *,
    circuit: dict | None,
    lora: bool,
    saved: Path | None = None,
    trainable: bool = True,
):
    """The base model (plus LoRA when `lora`) with MAC attached, as a SteeredModel.

    Args:
        circuit: MacSteering arguments but the hidden size (read from the model) for a new
            circuit; None loads the one saved in `saved`.
        saved: a directory written by SteeredModel.save_pretrained (circuit, and adapter files
            when LoRA trained), for evaluation.
        trainable: False freezes everything (evaluation).
    """
    from alignment.models import load_base, load_policy
    from alignment.models.steered import SteeredModel

    if lora:
        adapter = str(saved) if saved is not None else None
        base = load_policy(model_cfg, cache_dir, device, adapter, trainable=trainable)
    else:
        # The base never trains: no LoRA, no k-bit preparation (the circuit is fp32 anyway).
        base = load_base(model_cfg, cache_dir, device)
        if model_cfg.gradient_checkpointing and trainable:
            kwargs = {"use_reentrant": False}
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        base.requires_grad_(False)
    if circuit is not None:
        steering = MacSteering(base.config.hidden_size, **circuit)
    elif saved is not None:
        steering = load_steering(saved)
    else:
        raise ValueError("build_mac_model needs circuit settings or a saved directory")
    if not trainable:
        steering.requires_grad_(False)
    return SteeredModel(base, steering)
