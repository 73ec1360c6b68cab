"""The experiment presets carry the papers' settings (sources in conf/preset/*.yaml, the grid
YAMLs and PAPERS.md); plain `method=` runs keep the generic defaults."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg

GRIT_SEED = {  # spec/grit.md section 8, the seed run
    "optimizer.lr": 2e-4,
    "optimizer.scheduler": "linear",
    "optimizer.warmup_steps": 5,
    "optimizer.weight_decay": 0.01,
    "train.batch_size": 2,
    "train.grad_accum": 4,
}
CITA_PAPER = {  # spec/cita.md section 4
    "model.lora.r": 8,
    "model.lora.alpha": 16,
    "model.lora.dropout": 0.05,
    "model.lora.target_modules": ["q_proj", "v_proj"],
    "optimizer.lr": 5.4e-6,
    "optimizer.scheduler": "cosine",
    "optimizer.warmup_ratio": 0.1,
    "optimizer.weight_decay": 0.011,
    "train.batch_size": 2,
    "train.grad_accum": 8,
    "train.epochs": 3,
    "dataset.max_length": 2048,
}
FACTUAL_DPO = {  # spec/factual_dpo.md section 3
    "model.lora.r": 32,
    "model.lora.alpha": 64,
    "model.lora.dropout": 0.05,
    "optimizer.lr": 1.8e-6,
    "optimizer.warmup_ratio": 0.25,
    "train.batch_size": 2,
    "train.grad_accum": 16,
    "train.epochs": 3,
    "dataset.max_length": 2048,
    "dataset.too_long": "truncate",
    "method.beta": 0.1,
    "seed": 3407,
}
GENERIC = {  # the groups' own defaults (conf/optimizer/adamw.yaml, conf/model/llama3_8b.yaml)
    "optimizer.lr": 5e-5,
    "optimizer.scheduler": "cosine",
    "optimizer.warmup_steps": 0,
    "model.lora.r": 16,
    "train.batch_size": 4,
    "train.grad_accum": 1,
}
PRESETS = {
    "experiment=grid_sft_grit": GRIT_SEED,
    "experiment=grid_dpo_grit": GRIT_SEED,
    "experiment=grid_cita": CITA_PAPER,
    # CITA's LoRA/data settings, GRIT's optimizer recipe where both set a key.
    "experiment=grid_cita_grit": CITA_PAPER | GRIT_SEED,
    "experiment=factual_dpo_delta_grid": FACTUAL_DPO,
    "method=cita": GENERIC,
    "method=dpo optimizer=grit": GENERIC,
    "experiment=grid_dpo": GENERIC,
    "experiment=grid_sft": GENERIC,
    "experiment=stacked": GENERIC,  # the stacked code reports no settings (PAPERS.md)
}


def value(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("command", sorted(PRESETS))
def test_preset_composes_to_the_reference_table(command, tmp_path):
    cfg = compose_cfg([*command.split(), "model=llama3_8b"], tmp_path, tmp_path)
    wrong = {
        key: (value(cfg, key), want)
        for key, want in PRESETS[command].items()
        if value(cfg, key) != pytest.approx(want)
    }
    assert not wrong, f"{command}: (composed, reference) = {wrong}"


def test_a_command_line_override_still_wins_over_a_preset(tmp_path):
    cfg = compose_cfg(
        ["experiment=grid_dpo_grit", "model=tiny", "optimizer.lr=1e-3", "train.batch_size=4"],
        tmp_path,
        tmp_path,
    )
    assert (cfg.optimizer.lr, cfg.train.batch_size, cfg.optimizer.name) == (1e-3, 4, "grit")
