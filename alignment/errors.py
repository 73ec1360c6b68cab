"""The errors that end a run with one line instead of a traceback.

Each names what was wrong (the file, row and field; the config key; the step and the quantity;
the multi-rank layout) before any work is lost, so the entry points print `error: <message>` and
exit non-zero. Anything else keeps its traceback.
"""

from __future__ import annotations

from alignment.data.types import DataError
from alignment.distributed import StrategyError
from alignment.guards import NonFiniteError
from alignment.init_adapter import InitAdapterError
from alignment.rerun import RerunError
from alignment.risk import RiskInputError

ONE_LINE_ERRORS: tuple[type[Exception], ...] = (
    DataError,  # a bad input row, named by file, row and field
    FileNotFoundError,
    NonFiniteError,  # a non-finite loss or gradient: the step and the quantity (run FAILED)
    InitAdapterError,  # model.init_adapter: an unknown run, no adapter, another LoRA shape
    RerunError,  # rerun=<id> that cannot be recomposed
    RiskInputError,  # a risk.* key that selects nothing or a non-finite Fisher
    StrategyError,  # a multi-rank layout that cannot run
)
