"""QLoRA DPO on Llama-3-8B shapes: tokens/s, MFU and peak memory of our trainer, AdamW vs GRIT.

The model has a real architecture (`--size 8b`: hidden 4096, MLP 14336, 32 layers, 32 heads,
8 KV heads, vocab 128256) and random weights, built on the meta device and materialised one
linear layer at a time straight into NF4 (bitsandbytes Linear4bit, double quant, bf16 compute,
as our BitsAndBytesConfig asks), so it never needs 16 GB of bf16 weights or a checkpoint. From
there it takes our own path: alignment.models.load_policy (prepare_model_for_kbit_training,
LoRA from conf/model/llama3_8b.yaml), alignment.pipeline.training_args, AlignmentTrainer with
method=dpo and optimizer=adamw or optimizer=grit, on synthetic token batches (every row
--seq-len tokens, the first --prompt-frac of them prompt, no padding). The reference is the
adapter-disabled model, run every step (`--ref online`), or precomputed (`--ref cached`).

MFU = model FLOPs / step time / peak. Model FLOPs per step = 6·N·T for the policy forward and
backward plus 2·N·T for an online reference forward, with T the tokens of the step and N the
parameters of the base model less the input embedding table (a lookup, no FLOPs); recomputation
under gradient checkpointing is not counted, as usual. Peak = the GPU's dense bf16 peak, from
PEAK_FLOPS by device name (or --peak-tflops). Peak memory: torch.cuda.max_memory_allocated
during training (weights included); on CPU the process's peak RSS. Each leg is a fresh process.
Goals on a GPU: MFU >= 35%, peak <= 10 GB with AdamW and <= 11 GB with GRIT.

    python bench/gpu_qlora.py --size 8b              # a GPU with >= 16 GB
    python bench/gpu_qlora.py --size tiny            # CPU, seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import (
    emit,
    measured,
    median,
    our_trainer,
    print_ratio,
    print_table,
    run_leg,
    run_overrides,
    setup_run,
    timed_reference,
    tokens_per_s,
    train_measured,
)

if TYPE_CHECKING:  # the parent process never imports torch: only the legs pay for it
    import torch

# LlamaConfig fields per size. 8b: Meta-Llama-3-8B's config.json.
SIZES: dict[str, dict[str, Any]] = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
               max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                 max_position_embeddings=512),
}  # fmt: skip
# Dense bf16 peak FLOP/s by device-name substring, first match wins (SXM parts; an H100 PCIe
# peaks at 756 TFLOPS: pass --peak-tflops there).
PEAK_FLOPS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12))
OPTIMIZERS = ("adamw", "grit")
GOAL_GB = {"adamw": 10.0, "grit": 11.0}
GOAL_MFU = 0.35


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="QLoRA DPO throughput, MFU and memory.")
    p.add_argument("--size", choices=tuple(SIZES), default="8b")
    p.add_argument("--steps", type=int, default=None, help="default: 10 (8b), 3 (tiny)")
    p.add_argument("--warmup", type=int, default=None, help="default: 2 (8b), 1 (tiny)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs; default 2 (8b), 2 (tiny)")
    p.add_argument("--seq-len", type=int, default=None, help="default 1024 (8b), 64 (tiny)")
    p.add_argument("--prompt-frac", type=float, default=0.5)
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--ref", choices=("online", "cached"), default="online")
    p.add_argument("--gradient-checkpointing", choices=("auto", "on", "off"), default="auto",
                   help="auto: on for 8b, off for tiny")  # fmt: skip
    p.add_argument("--peak-tflops", type=float, default=None, help="override the peak table")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override")
    p.add_argument("--worker", choices=OPTIMIZERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    big = args.size != "tiny"
    for name, (if_big, if_tiny) in {"steps": (10, 3), "warmup": (2, 1), "batch_size": (2, 2),
                                    "seq_len": (1024, 64)}.items():  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, if_big if big else if_tiny)
    if args.threads == 0 and not big:
        args.threads = 1  # tiny matmuls: more threads only contend
    if args.gradient_checkpointing == "auto":
        args.gradient_checkpointing = "on" if big else "off"
    return args


def overrides(args: argparse.Namespace, optimizer: str, out: Path) -> list[str]:
    return [
        "model=llama3_8b",  # the LoRA, dtype and quantisation settings; the weights are built here
        f"model.gradient_checkpointing={args.gradient_checkpointing == 'on'}",
        "method=dpo",
        f"optimizer={optimizer}",
        *run_overrides(out, args.batch_size, args.steps),
        f"train.torch_threads={args.threads}",
        *args.override,
    ]


# -- the model ------------------------------------------------------------------------------------
def _nf4_linear(linear, device: torch.device, compute_dtype, gen) -> torch.nn.Module:
    """A random bitsandbytes NF4 Linear4bit of `linear`'s shape, quantised on `device`."""
    import bitsandbytes as bnb
    import torch

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False,
                              compute_dtype=compute_dtype, compress_statistics=True,
                              quant_type="nf4", device="meta")  # fmt: skip
    shape = (linear.out_features, linear.in_features)
    w = torch.randn(shape, device=device, dtype=torch.bfloat16, generator=gen).mul_(0.02)
    layer.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=True,
                                     quant_type="nf4", module=layer).to(device)  # fmt: skip
    return layer


def _materialise(module, device: torch.device, gen) -> None:
    """Give a meta module real bf16 storage: N(0, 0.02) matrices, unit norm weights."""
    import torch

    module.to_empty(device=device, recurse=False)
    with torch.no_grad():
        for name, param in module.named_parameters(recurse=False):
            param.data = param.data.to(torch.bfloat16)
            if name == "weight" and param.dim() == 2:
                param.normal_(0.0, 0.02, generator=gen)
            else:
                param.fill_(1.0)


def random_nf4_llama(size: str, device: torch.device, attn_implementation: str | None):
    """A LlamaForCausalLM of SIZES[size] with random NF4 linear layers; returns (model, N).

    N = base parameters less the input embedding (counted before quantisation packs them).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(**SIZES[size], tie_word_embeddings=False, pad_token_id=0)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    setattr(parent, name, _nf4_linear(child, device, compute_dtype, gen))
    for module in model.modules():
        if any(p.is_meta for p in module.parameters(recurse=False)):
            _materialise(module, device, gen)
    model.model.rotary_emb = LlamaRotaryEmbedding(config).to(device)  # its buffers were meta
    model.config.use_cache = False
    # What from_pretrained(quantization_config=...) marks: peft then wraps the Linear4bit layers
    # with its bnb LoRA, and the Trainer does not try to .to() the model.
    model.is_loaded_in_4bit = True
    model.quantization_method = "bitsandbytes"
    return model, n_params


def build_policy(cfg, size: str, device: torch.device):
    """Our load_policy (k-bit preparation + LoRA from the config) on the random NF4 base."""
    from unittest import mock

    from alignment import models

    base, n_params = random_nf4_llama(size, device, cfg.model.attn_implementation)
    with mock.patch.object(models, "load_base", lambda *a, **k: base):
        policy = models.load_policy(cfg.model, cfg.cache_dir, device)
    return policy, n_params


def weight_bytes(model) -> dict[str, float]:
    """GB of parameters by kind: NF4 matrices, LoRA, and the rest (embedding, head, norms)."""
    kinds = {"nf4": 0, "lora": 0, "other": 0}
    for name, p in model.named_parameters():
        kind = "lora" if "lora_" in name else "nf4" if type(p).__name__ == "Params4bit" else "other"
        kinds[kind] += p.numel() * p.element_size()
    return {k: v / 1e9 for k, v in kinds.items()}


# -- data -----------------------------------------------------------------------------------------
class PadOnly:
    """What the collator and our_trainer need of a tokenizer for synthetic ids."""

    pad_token_id = 0


def synthetic_pairs(n: int, seq_len: int, prompt_frac: float, vocab: int, seed: int):
    """n pairs of random token ids; prompt + response = seq_len for chosen and rejected alike."""
    import torch
    from datasets import Dataset

    prompt = max(1, min(seq_len - 2, int(seq_len * prompt_frac)))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, prompt + 2 * (seq_len - prompt)), generator=g).tolist()
    return Dataset.from_dict({
        "prompt_ids": [r[:prompt] for r in ids],
        "chosen_ids": [r[prompt:seq_len] for r in ids],
        "rejected_ids": [r[seq_len:] for r in ids],
        "h_w": [0] * n, "h_l": [0] * n, "length": [seq_len] * n, "index": list(range(n)),
    })  # fmt: skip


# -- the legs -------------------------------------------------------------------------------------
def grit_unavailable() -> str | None:
    try:
        from alignment.optim.grit import build_grit  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the leg
        return f"{type(exc).__name__}: {exc}"
    return None


def worker(args: argparse.Namespace) -> None:
    from alignment.data.prepare import PreparedData

    if args.worker == "grit" and (reason := grit_unavailable()):
        emit({"skipped": reason})
        return
    out = Path(tempfile.mkdtemp(prefix=f"gpu_qlora_{args.worker}_"))
    cfg, method, device = setup_run(overrides(args, args.worker, out))
    model, n_params = build_policy(cfg, args.size, device)
    vocab = SIZES[args.size]["vocab_size"]
    train = synthetic_pairs(args.steps * args.batch_size, args.seq_len, args.prompt_frac, vocab,
                            cfg.seed)  # fmt: skip
    data = PreparedData(train, None)
    if args.ref == "cached":
        timed_reference(model, data, PadOnly.pad_token_id, cfg.train.batch_size * 2)
    trainer = our_trainer(cfg, method, model, PadOnly(), data.train, out, device,
                          train_sampling_strategy="sequential")  # fmt: skip
    result = train_measured(trainer, device)
    emit({**result, "n_params": n_params, "weights_gb": weight_bytes(model),
          "device": str(device), "device_name": _device_name(device)})  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)


def _device_name(device: torch.device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


# -- the parent -----------------------------------------------------------------------------------
def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    return next((flops for key, flops in PEAK_FLOPS if key in device_name), None)


def summarise(args: argparse.Namespace, r: dict) -> dict[str, float]:
    step = median(measured(r["steps"], args.warmup))
    tokens = median(measured(r["tokens"], args.warmup))
    per_token = (6 + (2 if args.ref == "online" else 0)) * r["n_params"]
    achieved = per_token * tokens / step
    peak = peak_flops(r["device_name"], args.peak_tflops)
    mem_gb = r.get("peak_gpu_mb", r["peak_rss_mb"]) / 1024
    return {
        "step": step,
        "tps": tokens_per_s(r["tokens"], r["steps"], args.warmup),
        "tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else float("nan"),
        "mem_gb": mem_gb,
        "loss": r["losses"][-1] if r["losses"] else float("nan"),
    }


def report(args: argparse.Namespace, results: dict[str, dict]) -> None:
    ran = {o: r for o, r in results.items() if "skipped" not in r}
    for opt, r in results.items():
        if "skipped" in r:
            print(f"{opt}: skipped ({r['skipped']})")
    if not ran:
        return
    first = next(iter(ran.values()))
    gpu = "peak_gpu_mb" in first
    w = first["weights_gb"]
    print(f"\nsize={args.size} N={first['n_params'] / 1e9:.3g}B device={first['device_name']} "
          f"batch={args.batch_size} pairs x {args.seq_len} tokens, steps={args.steps} "
          f"(warm-up {args.warmup} dropped), ref={args.ref}, "
          f"gradient checkpointing={args.gradient_checkpointing}")  # fmt: skip
    print(f"weights: nf4 {w['nf4']:.3g} GB, lora {w['lora']:.3g} GB, "
          f"embedding/head/norms {w['other']:.3g} GB")  # fmt: skip
    stats = {opt: summarise(args, r) for opt, r in ran.items()}
    mem_name = "peak_gpu_GB" if gpu else "peak_rss_GB"
    print_table(["optimizer", "step_s", "tokens/s", "TFLOP/s", "MFU", mem_name, "last_loss"],
                [[o, s["step"], s["tps"], s["tflops"], s["mfu"], s["mem_gb"], s["loss"]]
                 for o, s in stats.items()])  # fmt: skip
    if gpu:
        for opt, s in stats.items():
            ok = s["mfu"] >= GOAL_MFU and s["mem_gb"] <= GOAL_GB[opt]
            print(f"goal {opt}: MFU >= {GOAL_MFU:.0%} and peak <= {GOAL_GB[opt]:g} GB: "
                  f"{'met' if ok else 'NOT met'}")  # fmt: skip
    if len(stats) == 2:
        print_ratio("tokens_per_s grit/adamw", stats["grit"]["tps"] / stats["adamw"]["tps"])
        print_ratio("peak_mem grit/adamw", stats["grit"]["mem_gb"] / stats["adamw"]["mem_gb"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = {}
    for opt in args.optimizers.split(","):
        print(f"leg: {opt}", flush=True)
        results[opt] = run_leg(Path(__file__), [*argv, "--worker", opt])
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
