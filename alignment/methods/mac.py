"""MAC, the Mechanistic Alignment Circuit (spec/mac.md): schema and registry entry.

The loss is the summed per-axis NLL (`alignment.losses.axis_sum_nll`) over round-robin batches of
the three axis datasets (`method.data`); the model is the frozen base (optionally 4-bit) with
the circuit hooked in at `layers` (and LoRA alongside when `lora`); after training the circuit's
per-token axis attention on a few held-out prompts is logged as a heatmap.

Deviations from the reference code, all flags: `zero_init_out_proj` (the reference's default
init moves the model off the base at step 0), `lora` (the reference's README says LoRA + MAC but
its code trains MAC only, which is the default here), the unused `axis_embeddings` are left out,
and the learning rate has no reference value (the optimizer's lr is logged with the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from alignment.config.axes import AxisDataConfig
from alignment.config.checks import check, check_choice
from alignment.config.method import MethodConfig
from alignment.losses import axis_sum_nll
from alignment.methods.registry import Method, register

SITES = ("attn_out", "residual_post")
MODES = ("standard", "generic", "frozen")
# Held out of every axis's training data: a how-to question, a harmful request, an unknowable.
HEATMAP_PROMPTS = [
    "How do I boil an egg?",
    "How do I make a bomb?",
    "What will the exchange rate of the euro be next year?",
]


@dataclass
class MacConfig(MethodConfig):
    """MAC at decoder `layers` (the reference: [15], Mistral-7B), reading and steering `site`:
    `attn_out` (the reference: MAC(a) is added to the attention output a) or `residual_post`
    (added to the decoder layer's output). head_dim: the shared q/k/v width (64).
    zero_init_out_proj: start equal to the base model. lora: train LoRA on the base as well.
    mode: standard | generic (the reference's label, same code) | frozen (q/k/v frozen).
    heatmap: log the axis-attention heatmap of HEATMAP_PROMPTS after training.
    data: the three axis datasets (alignment/config/axes.py)."""

    layers: list[int] = field(default_factory=lambda: [15])
    site: str = "attn_out"
    head_dim: int = 64
    zero_init_out_proj: bool = False
    lora: bool = False
    mode: str = "standard"
    heatmap: bool = True
    data: AxisDataConfig = field(default_factory=AxisDataConfig)

    def __post_init__(self) -> None:
        check_choice("method.site", self.site, SITES)
        check_choice("method.mode", self.mode, MODES)
        check("method.head_dim", self.head_dim, ge=1)
        if not self.layers or min(self.layers) < 0:
            raise ValueError(f"method.layers must be decoder layer indices >= 0, got {self.layers}")

    def circuit(self) -> dict:
        """MacSteering's arguments (all but the model's hidden size)."""
        return {
            "layers": list(self.layers),
            "site": self.site,
            "head_dim": self.head_dim,
            "zero_init_out_proj": self.zero_init_out_proj,
            "mode": self.mode,
        }


def check_layers_fit(cfg) -> None:
    """method.layers against the model's layer count, read from its config file alone, so a
    layer the model lacks fails before any MLflow run or weight loading."""
    from transformers import AutoConfig

    from alignment.models.mac import check_layers
    from alignment.models.weights import weights_dir

    path = weights_dir(cfg.model, cfg.cache_dir)
    config = AutoConfig.from_pretrained(path, revision=cfg.model.revision).get_text_config()
    check_layers(cfg.method.layers, config.num_hidden_layers)


def axis_data(cfg, method: Method, tokenizer):
    """The three axis datasets of `cfg.method.data`, interleaved round-robin (layers checked)."""
    from alignment.data.axis_data import axis_sources, prepare_axis_data

    check_layers_fit(cfg)
    data = cfg.method.data
    sources = axis_sources(cfg.dataset, data)
    return prepare_axis_data(cfg, sources, tokenizer, method, data.round_robin)


def _model(cfg, device, saved: Path | None, trainable: bool):
    from alignment.models.mac import build_mac_model

    m = cfg.method
    circuit = m.circuit() if saved is None else None
    # A saved run says itself whether LoRA trained alongside (its adapter files).
    lora = m.lora if saved is None else (saved / "adapter_config.json").is_file()
    kwargs = {"circuit": circuit, "lora": lora, "saved": saved, "trainable": trainable}
    return build_mac_model(cfg.model, cfg.cache_dir, device, **kwargs)


def _heatmap(cfg, model, tokenizer, out: Path) -> list[Path]:
    """The per-token axis attention of the first MAC layer on HEATMAP_PROMPTS, as a figure."""
    if not cfg.method.heatmap:
        return []
    from alignment.models.mac_heatmap import collect_axis_attention, heatmap_figure

    layer = cfg.method.layers[0]
    rows = collect_axis_attention(model, model.extension, tokenizer, HEATMAP_PROMPTS, layer)
    title = f"MAC axis attention, layer {layer} ({cfg.method.site}), {cfg.model.name}"
    return [heatmap_figure(rows, out / "mac_axis_attention.png", title)]


# Every key shapes the model or its training (the hooks), none is a loss argument.
FIELDS = tuple(f.name for f in fields(MacConfig) if f.name != "name")
register(
    Method(
        "mac",
        MacConfig,
        axis_sum_nll,
        needs_pairs=False,
        model_keys=FIELDS,
        label="MAC",
        prepare_data=axis_data,
        build_model=_model,
        after_train=_heatmap,
    )
)
