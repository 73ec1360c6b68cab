"""alignment-risk: a Fisher preflight before fine-tuning, and the AlignGuard LoRA regulariser.

The maths (spec/alignment_risk.md) lives in pure functions over a model, parameter names and
batches, with plain keyword arguments:
- params.py: select parameters by name pattern, the max_parameters scale guard;
- gradients.py: per-sample gradients (torch.func vmap, or a loop);
- subspace.py: empirical Fisher, thin SVD, explained-variance rank, sensitivity map;
- curvature.py: overlap of the first update, HVP curvature coupling (eps_hat, gamma_hat);
- forecast.py: quartic forecast, collapse step, refinement rule, warning strings;
- preflight.py: the pipeline (estimate_subspace, assess);
- alignguard.py: the regulariser; safety.py: the default safety loss (DPO on pairs);
- artifacts.py: figures (PNG) and arrays (JSON).
Around them, for a training run: runner.py (the method's loss, fine-tuning batches, the subspace
cache, the gate), regularizers.py (the `regularizer` registry and schemas), builder.py (RunConfig
-> keyword arguments, MLflow record, gate, regulariser; called by the pipeline), standalone.py and
__main__.py (`python -m alignment.risk`).
"""

from alignment.risk.alignguard import TERMS, AlignGuard, alignguard_terms
from alignment.risk.forecast import Forecast, forecast_collapse, lower_quantile, warning_message
from alignment.risk.gradients import per_sample_gradients
from alignment.risk.params import DEFAULT_PATTERNS, RiskInputError, Selection, select_parameters
from alignment.risk.preflight import PreflightReport, assess, estimate_subspace
from alignment.risk.subspace import SafetySubspace, explained_variance_rank

__all__ = [
    "DEFAULT_PATTERNS",
    "TERMS",
    "AlignGuard",
    "Forecast",
    "PreflightReport",
    "RiskInputError",
    "SafetySubspace",
    "Selection",
    "alignguard_terms",
    "assess",
    "estimate_subspace",
    "explained_variance_rank",
    "forecast_collapse",
    "lower_quantile",
    "per_sample_gradients",
    "select_parameters",
    "warning_message",
]
