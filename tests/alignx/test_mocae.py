"""MoCaE on the `tiny` model: the router trained on axis-labelled prompt states routes held-out
prompts of the three axes above chance (1/3), and the whole state survives save/load."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from alignment.alignx.fit import accuracy, fit_projector, fit_router, prompt_states
from alignment.alignx.mocae import Mocae, load_mocae, save_mocae
from alignment.axes import AXES
from alignment.data.axes import BUILTIN_AXIS_DATA
from alignment.data.axis_data import AxisCollator, axis_source, prepare_axis_data
from alignment.methods import get_method
from alignment.models import load_base, load_tokenizer
from tests.conftest import compose_cfg


@pytest.fixture(scope="module")
def states(tmp_path_factory, cache_dir):
    """Prompt states of the builtin axis data (train: cycled to the largest axis; val: the
    shortest, so every held-out prompt appears once and the axes are balanced)."""
    cfg = compose_cfg(
        ["model=tiny", "method=sft", "dataset.val_fraction=0.2"],
        tmp_path_factory.mktemp("run"),
        cache_dir,
    )
    tok = load_tokenizer(cfg.model, cfg.cache_dir)
    sources = {a: axis_source(cfg.dataset, BUILTIN_AXIS_DATA[a]) for a in AXES}
    method = get_method(cfg.method)
    train = prepare_axis_data(cfg, sources, tok, method, length="longest").train
    val = prepare_axis_data(cfg, sources, tok, method, length="shortest").val
    model = load_base(cfg.model, cfg.cache_dir, torch.device("cpu"))
    collate = AxisCollator(tok.pad_token_id)
    loaders = [DataLoader(d, batch_size=16, collate_fn=collate) for d in (train, val)]
    pooled = [prompt_states(model, loader) for loader in loaders]
    return cfg.model.tiny_hidden, pooled[0], pooled[1]


def test_router_beats_chance_on_held_out_axis_prompts(states):
    hidden, (x, y), (x_val, y_val) = states
    assert torch.bincount(y_val).tolist() == [10, 10, 10]  # balanced: chance is 1/3
    mocae = Mocae(hidden)
    before = accuracy(mocae.route_logits(x_val), y_val)
    fit_projector(mocae, x, y, steps=100, lr=1e-3)
    losses = fit_router(mocae, x, y, steps=100, lr=1e-3)
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        routed = accuracy(mocae.route_logits(x_val), y_val)
        calibrated = accuracy(mocae.weights(x_val), y_val)
    assert routed >= 0.6 and calibrated >= 0.6, (before, routed, calibrated)


def test_weights_on_the_simplex_and_save_load_round_trip(states, tmp_path):
    hidden, (x, y), (x_val, _) = states
    mocae = Mocae(hidden, eps=0.1)
    fit_projector(mocae, x, y, steps=5, lr=1e-3)
    fit_router(mocae, x, y, steps=5, lr=1e-3)
    w = mocae.weights(x_val).detach()
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(len(x_val)))
    loaded = load_mocae(save_mocae(mocae, tmp_path / "mocae"))
    assert loaded.settings == mocae.settings
    assert torch.equal(loaded.weights(x_val), w)
    with pytest.raises(FileNotFoundError, match="mocae.json"):
        load_mocae(tmp_path / "nowhere")


def test_fits_are_deterministic_and_leave_the_global_rng_alone(states):
    hidden, (x, y), _ = states
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        mocae = Mocae(hidden)
        state = torch.random.get_rng_state()
        fit_router(mocae, x, y, steps=10, lr=1e-3, seed=3)
        assert torch.equal(torch.random.get_rng_state(), state)
        runs.append(mocae.router.w_r.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
