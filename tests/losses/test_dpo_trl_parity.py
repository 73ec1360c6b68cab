"""DPO equals TRL 1.16's DPOTrainer sigmoid loss on the same log-probs (within 1e-6).

TRL inlines its loss in DPOTrainer._compute_loss, so the test calls that method on a bare
trainer object whose model returns fixed per-token log-probs, with precomputed reference
log-probs in the batch (TRL's `precompute_ref_log_probs` path).
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import DPOTrainer

from alignment.losses import dpo_loss


class FixedLogprobModel(torch.nn.Module):
    def __init__(self, per_token: torch.Tensor) -> None:
        super().__init__()
        self.per_token = per_token

    def forward(self, **kwargs):
        t = self.per_token
        zeros = torch.zeros_like(t)
        return SimpleNamespace(log_probs=t, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def trl_sigmoid_loss(
    per_token, ref_c, ref_r, beta, label_smoothing=0.0, sft_weight=None, mask=None
):
    """TRL's loss on fixed per-token log-probs; sft_weight: loss_type=["sigmoid", "sft"] with
    loss_weights=[1, sft_weight]; mask (rows, tokens): the completion tokens (default all)."""
    trainer = object.__new__(DPOTrainer)
    model = FixedLogprobModel(per_token).train()
    identity = lambda x: x  # noqa: E731
    trainer.__dict__.update(
        model=model,
        ref_model=None,
        beta=beta,
        label_smoothing=label_smoothing,
        loss_types=["sigmoid"] if sft_weight is None else ["sigmoid", "sft"],
        loss_weights=[1.0] if sft_weight is None else [1.0, sft_weight],
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=1.0,
        ld_alpha=None,
        use_weighting=False,
        precompute_ref_logps=True,
        aux_loss_enabled=False,
        router_aux_loss_coef=0.0,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        accelerator=SimpleNamespace(gather_for_metrics=identity, gather=identity, device="cpu"),
    )
    rows, width = per_token.shape[0], per_token.shape[1] + 1
    completion = torch.ones(rows, width, dtype=torch.long)
    if mask is not None:
        completion[:, 1:] = mask
    inputs = {
        "input_ids": torch.ones(rows, width, dtype=torch.long),
        "attention_mask": torch.ones(rows, width, dtype=torch.long),
        "completion_mask": completion,
        "ref_chosen_logps": ref_c,
        "ref_rejected_logps": ref_r,
    }
    return trainer._compute_loss(model, inputs, return_outputs=False)


# TRL 1.16's "sigmoid" branch ignores label_smoothing (it is plain DPO); ours applies the
# conservative-DPO smoothing of the AIXpert spec, so parity holds at label_smoothing = 0.
@pytest.mark.parametrize("beta,label_smoothing", [(0.1, 0.0), (0.5, 0.0), (0.01, 0.0)])
def test_dpo_equals_trl_sigmoid(beta, label_smoothing):
    g = torch.Generator().manual_seed(0)
    per_token = -torch.rand(8, 7, generator=g, dtype=torch.float64) * 3  # 4 pairs, 7 tokens
    ref_c = -torch.rand(4, generator=g, dtype=torch.float64) * 20
    ref_r = -torch.rand(4, generator=g, dtype=torch.float64) * 20
    expected = trl_sigmoid_loss(per_token, ref_c, ref_r, beta, label_smoothing)
    logps = per_token.sum(1)
    ours = dpo_loss(logps[:4], logps[4:], ref_c, ref_r, beta=beta, label_smoothing=label_smoothing)
    assert abs(ours.loss.item() - expected.item()) < 1e-6


@pytest.mark.parametrize("sft_weight", [0.5, 2.0])
def test_dpo_with_sft_weight_equals_trl_sigmoid_plus_sft(sft_weight):
    """RPO: DPO + sft_weight * the chosen responses' token-mean NLL, TRL's
    loss_type=["sigmoid", "sft"]. Ragged responses (3-7 tokens), so a per-sequence mean or a
    mean over every token of both responses would differ."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 4, 6, 7, 2, 5])
    mask = (torch.arange(7) < lengths[:, None]).long()
    per_token = -torch.rand(8, 7, generator=g, dtype=torch.float64) * 3 * mask
    ref_c = -torch.rand(4, generator=g, dtype=torch.float64) * 20
    ref_r = -torch.rand(4, generator=g, dtype=torch.float64) * 20
    expected = trl_sigmoid_loss(per_token, ref_c, ref_r, 0.1, sft_weight=sft_weight, mask=mask)
    logps, tokens = per_token.sum(1), lengths.double()
    ours = dpo_loss(logps[:4], logps[4:], ref_c, ref_r, tokens[:4], beta=0.1, sft_weight=sft_weight)
    assert abs(ours.loss.item() - expected.item()) < 1e-6
    # by hand: the NLL is the chosen log-probs' sum over the chosen tokens (7+3+5+4 = 19)
    plain = dpo_loss(logps[:4], logps[4:], ref_c, ref_r, beta=0.1).loss
    nll = -logps[:4].sum() / 19
    assert ours.loss.item() == pytest.approx(plain.item() + sft_weight * nll.item(), abs=1e-12)
    assert ours.metrics["dpo/sft_nll"].item() == pytest.approx(nll.item(), abs=1e-12)
