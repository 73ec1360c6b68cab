"""Pure loss functions over sequence log-probs, and the log-prob gathering they rely on."""

from alignment.losses.logprobs import selective_log_softmax, sequence_logps, token_kl_full_vocab
from alignment.losses.preference import cita_loss, dpo_loss, factual_dpo_loss, seq_kl
from alignment.losses.sft import axis_sum_nll, sft_loss
from alignment.losses.types import LossOutput

__all__ = [
    "LossOutput",
    "axis_sum_nll",
    "cita_loss",
    "dpo_loss",
    "factual_dpo_loss",
    "selective_log_softmax",
    "seq_kl",
    "sequence_logps",
    "sft_loss",
    "token_kl_full_vocab",
]
