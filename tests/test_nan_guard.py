"""A non-finite loss or gradient norm stops the run at that step (or skips the step), the last
checkpoint stays finite, MLflow ends FAILED with a `failure` tag, nothing writes DONE, and a NaN
is never logged as 0.

The e2e cases train the tiny model with optimizer.lr=1e3: on CPU with seed 0 the gradient norm
is finite for steps 1-3 (0.229, 0.201, 0.944) and NaN from step 4 on (the weights after step 3
overflow the backward pass); before the fix the loss was logged as 0.0 from step 5 on and the
run ended DONE with `0.6857 -> 0.0000`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from alignment.guards import NonFiniteError, NonFiniteGuard
from tests.conftest import run_train


def _params(*grads):
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_finite_window_passes_and_resets_the_streak():
    guard = NonFiniteGuard("skip_step", 2)
    guard.observe_loss(torch.tensor(0.5))
    assert guard.check_window(1, _params([3.0, 4.0]), has_state=False)
    assert guard.skipped == 0 and guard.log_fields() == {"skipped_steps": 0.0}


@pytest.mark.parametrize(
    "loss,grad,quantity",
    [
        (math.nan, [1.0, 1.0], "loss is nan"),
        (math.inf, [1.0, 1.0], "loss is inf"),
        (0.5, [math.nan, 1.0], "gradient norm is nan"),
        (0.5, [math.inf, 1.0], "gradient norm is inf"),
    ],
)
def test_stop_names_the_step_and_the_quantity(loss, grad, quantity):
    guard = NonFiniteGuard("stop")
    guard.observe_loss(torch.tensor(0.1))  # an earlier micro-batch of the same window
    guard.observe_loss(torch.tensor(loss))
    params = _params(grad)
    with pytest.raises(NonFiniteError, match=rf"^step 7: {quantity}; stopped") as err:
        guard.check_window(7, params, has_state=False)
    assert "\n" not in str(err.value)
    assert params[0].grad is not None  # nothing touched: the run ends here


def test_skip_step_drops_the_gradients_and_stops_after_the_bound():
    guard = NonFiniteGuard("skip_step", max_consecutive_skips=2)
    for step in (1, 2):
        params = _params([math.nan, 0.0])
        guard.observe_loss(torch.tensor(0.3))
        assert not guard.check_window(step, params, has_state=False)
        assert params[0].grad is None  # torch optimizers skip a parameter without a gradient
        fields = guard.log_fields()
        assert fields["skipped_steps"] == step and math.isnan(fields["grad_norm"])
    guard.observe_loss(torch.tensor(0.3))
    assert guard.check_window(3, _params([1.0, 0.0]), has_state=False)  # a finite step resets
    assert "grad_norm" not in guard.log_fields()
    for step in (4, 5):
        assert not guard.check_window(step, _params([math.nan, 0.0]), has_state=False)
    with pytest.raises(NonFiniteError, match="step 6: .* 3 non-finite steps in a row"):
        guard.check_window(6, _params([math.nan, 0.0]), has_state=False)
    assert guard.skipped == 4


def test_skip_step_with_a_preconditioner_stops():
    guard = NonFiniteGuard("skip_step")
    with pytest.raises(NonFiniteError, match="preconditioner"):
        guard.check_window(2, _params([math.nan, 0.0]), has_state=True)


def test_a_skipped_step_leaves_adamw_untouched():
    """AdamW skips parameters whose .grad is None: no moment update, no weight decay."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.1)
    p.grad = torch.ones(3)
    opt.step()
    before, state = p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.full((3,), math.nan)
    NonFiniteGuard("skip_step").check_window(2, [p], has_state=False)
    opt.step()
    assert torch.equal(p.detach(), before)
    assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())


ARGS = [
    "model=tiny",
    "method=dpo",
    "optimizer.lr=1e3",
    "train.max_steps=12",
    "train.save_steps=2",
    "train.batch_size=4",
    "train.samples=0",
    "tracking.experiment=nan",
]


def _finite_checkpoint(path) -> bool:
    weights = load_file(str(path / "adapter_model.safetensors"))
    return bool(weights) and all(torch.isfinite(w).all() for w in weights.values())


def test_exploding_run_stops_at_the_step_and_fails_in_mlflow(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    run_dir = tmp_path / "run"
    proc = run_train([*ARGS, f"tracking.uri={db}"], run_dir, cache_dir)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 4: gradient norm is nan; stopped before the optimizer")
    assert "Traceback" not in proc.stderr
    assert str(run_dir / "checkpoints" / "checkpoint-2") in last  # the checkpoint kept
    assert not (run_dir / "DONE").exists() and not (run_dir / "summary.json").exists()
    assert not (run_dir / "adapter").exists()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2"]
    assert _finite_checkpoint(run_dir / "checkpoints" / "checkpoint-2")

    client = MlflowClient(db)
    run = client.get_run((run_dir / "mlflow_run_id").read_text())
    assert run.info.status == "FAILED"
    assert run.data.tags["failure"].startswith("NonFiniteError: step 4: gradient norm is nan")
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert all(math.isfinite(m.value) and m.value > 0.5 for m in losses)  # never a 0


def test_skip_step_logs_nan_not_zero_and_stops_after_the_bound(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    run_dir = tmp_path / "run"
    extra = ["train.nan_policy=skip_step", "train.max_consecutive_skips=3", f"tracking.uri={db}"]
    proc = run_train([*ARGS, *extra], run_dir, cache_dir)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 7: gradient norm is nan; 4 non-finite steps in a row")
    for step in (4, 5, 6):
        assert f"step {step}: gradient norm is nan; optimizer step skipped" in proc.stdout
    client = MlflowClient(db)
    run_id = (run_dir / "mlflow_run_id").read_text()
    assert client.get_run(run_id).info.status == "FAILED"
    norms = {m.step: m.value for m in client.get_metric_history(run_id, "train/grad_norm")}
    assert all(math.isfinite(norms[s]) for s in (1, 2, 3))
    assert all(math.isnan(norms[s]) for s in (4, 5, 6))  # the true norm, not the Trainer's 0
    skipped = {m.step: m.value for m in client.get_metric_history(run_id, "train/skipped_steps")}
    assert skipped == {1: 0, 2: 0, 3: 0, 4: 1, 5: 2, 6: 3}
    # Diagnostics of skipped steps are dropped with them (NaN margins would read as accuracy 0).
    accuracy = client.get_metric_history(run_id, "train/rewards/accuracy")
    assert [m.step for m in accuracy] == [1, 2, 3]
    # Steps 4-6 were skipped: the weights saved at step 6 are those after step 3, as at step 4.
    ckpt = run_dir / "checkpoints"
    a, b = (load_file(str(ckpt / f"checkpoint-{s}" / "adapter_model.safetensors")) for s in (4, 6))
    assert all(torch.equal(a[k], b[k]) for k in a) and _finite_checkpoint(ckpt / "checkpoint-6")
    state = json.loads((ckpt / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
