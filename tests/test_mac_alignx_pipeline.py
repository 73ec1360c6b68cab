"""run_training in-process on `tiny` for method=mac and method=alignx (no MLflow): what lands on
disk, and the trained model rebuilt through the method's build_model hook as evaluate.py does.
The subprocess versions (MLflow runs, resume after kill -9, evaluate.py) are in
tests/test_mac_alignx_e2e.py and tests/test_mac_alignx_resume.py (slow)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from alignment.errors import ONE_LINE_ERRORS
from alignment.init_adapter import InitAdapterError
from alignment.methods import get_method
from alignment.methods.registry import MethodSetupError
from alignment.pipeline import _check_own_model, run_training
from tests.conftest import compose_cfg

FAST = ["model=tiny", "train.max_steps=2", "train.batch_size=2", "train.samples=0"]
FAST += ["tracking.enabled=false", "train.save_steps=2"]


def test_mac_in_process(tmp_path, cache_dir):
    cfg = compose_cfg([*FAST, "method=mac", "method.layers=[0]"], tmp_path / "run", cache_dir)
    assert run_training(cfg) is not None
    out = tmp_path / "run"
    circuit = load_file(str(out / "adapter" / "mac_circuit.safetensors"))
    assert circuit and all(k.startswith("circuits.0.") for k in circuit)
    checkpoint = load_file(str(out / "checkpoints" / "checkpoint-2" / "model.safetensors"))
    assert set(checkpoint) == {f"extension.{k}" for k in circuit}  # no frozen base weights
    assert (out / "mac_axis_attention.png").stat().st_size > 5_000
    model = get_method(cfg.method).build_model(cfg, torch.device("cpu"), out / "adapter", False)
    loaded = model.extension.circuits["0"].out_proj.weight
    assert torch.equal(loaded, circuit["circuits.0.out_proj.weight"])


def test_alignx_in_process(tmp_path, cache_dir):
    steps = ["method.projector_steps=5", "method.router_steps=5"]
    cfg = compose_cfg([*FAST, "method=alignx", *steps], tmp_path / "run", cache_dir)
    assert run_training(cfg) is not None
    out = tmp_path / "run"
    for axis in ("helpfulness", "harmlessness", "honesty"):
        assert (out / "adapter" / axis / "adapter_model.safetensors").is_file()
    assert (out / "stage1" / "DONE").is_file() and (out / "stage2" / "DONE").is_file()
    model = get_method(cfg.method).build_model(cfg, torch.device("cpu"), out / "adapter", False)
    ids = torch.randint(5, 300, (2, 7))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape[:2] == (2, 7) and torch.isfinite(logits).all()
    torch.testing.assert_close(model.last_weights.sum(-1), torch.ones(2))


def test_mac_on_a_4bit_base_trains_the_circuit_only(tmp_path, cache_dir):
    """bitsandbytes NF4 on CPU (out-features must be multiples of 32: tiny_hidden=32); the
    circuit (fp32) learns through the frozen 4-bit layers above it."""
    over = ["method=mac", "method.layers=[0]", "model.quantization=4bit", "model.tiny_hidden=32"]
    cfg = compose_cfg([*FAST, *over, "method.heatmap=false"], tmp_path / "run", cache_dir)
    method = get_method(cfg.method)
    torch.manual_seed(cfg.seed)
    model = method.build_model(cfg, torch.device("cpu"), None, True)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds
    initial = {k: v.clone() for k, v in model.extension.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("extension.") for n in trainable)
    final = run_training(cfg)
    assert final is not None and torch.isfinite(torch.tensor(final))
    trained = load_file(str(tmp_path / "run" / "adapter" / "mac_circuit.safetensors"))
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # the circuit moved


def test_mac_with_lora_saves_the_adapter_beside_the_circuit(tmp_path, cache_dir):
    """The pipeline saves only the active adapter (main's init-adapter rule); a SteeredModel
    passes that through to peft: LoRA weights and the circuit land side by side, and the
    rebuilt model finds its LoRA from the files."""
    over = ["method=mac", "method.layers=[0]", "method.lora=true", "method.heatmap=false"]
    cfg = compose_cfg([*FAST, *over], tmp_path / "run", cache_dir)
    assert run_training(cfg) is not None
    adapter = tmp_path / "run" / "adapter"
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    assert lora and all("lora_" in k for k in lora)
    assert (adapter / "mac_circuit.safetensors").is_file()
    model = get_method(cfg.method).build_model(cfg, torch.device("cpu"), adapter, False)
    assert model.active_adapter == "default"


def test_own_model_methods_refuse_an_init_adapter(tmp_path, cache_dir):
    """model.init_adapter would be ignored by a build_model hook: one line instead (run_training
    checks it before any data or model is loaded; resolve_init_adapter has run before)."""
    adapter = tmp_path / "init"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")  # the compose-time check wants one
    for method in ("mac", "alignx"):
        over = [f"method={method}", f"model.init_adapter={adapter}"]
        cfg = compose_cfg([*FAST, *over], tmp_path / method, cache_dir)
        with pytest.raises(InitAdapterError, match=f"method={method} builds its own model"):
            _check_own_model(cfg, get_method(cfg.method))


def test_own_model_methods_refuse_the_risk_preflight(tmp_path, cache_dir):
    """risk=preflight (and the standalone preflight) builds cfg.dataset batches on a LoRA
    policy: for mac/alignx one RiskInputError line, in run_training before any data is read."""
    from alignment.risk import RiskInputError
    from alignment.risk.standalone import preflight_only

    for method in ("mac", "alignx"):
        cfg = compose_cfg(
            [*FAST, f"method={method}", "risk=preflight"], tmp_path / method, cache_dir
        )
        for run in (run_training, preflight_only):
            with pytest.raises(RiskInputError, match=f"method={method} brings its own model"):
                run(cfg)
        assert not (tmp_path / method / "checkpoints").exists()


def test_alignx_stage1_alone_refuses_eval_after_train(tmp_path, cache_dir):
    """Stage 1 leaves experts without a router: evaluating its run would score the base model
    under the AlignX-repro label, so it is one line before any data is read."""
    over = ["method=alignx", "method.stage=1", "eval_after_train=true", "eval=[aqi]"]
    cfg = compose_cfg([*FAST, *over], tmp_path / "run", cache_dir)
    with pytest.raises(MethodSetupError, match="method.stage=1 with eval_after_train=true"):
        run_training(cfg)
    assert MethodSetupError in ONE_LINE_ERRORS
