"""Schema of the per-axis training data of MAC and AlignX (`method.data.*`).

`preset` picks a loader per axis (alignment/data/axes.py): `builtin` is the project's own data
(offline, the default), `hub` the reference code's datasets (Alpaca, BeaverTails' safe rows,
TruthfulQA). Each axis can then be overridden on its own, e.g.
`method.data.honesty.name=local method.data.honesty.path=my_honest.jsonl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignment.axes import AXES
from alignment.config.checks import check, check_choice

PRESETS = {
    "builtin": {
        "helpfulness": "helpful_builtin",
        "harmlessness": "harmless_builtin",
        "honesty": "honest_builtin",
    },
    "hub": {
        "helpfulness": "alpaca",
        "harmlessness": "beavertails_safe",
        "honesty": "truthfulqa_answers",
    },
}
ROUND_ROBIN = ("shortest", "longest")


@dataclass
class AxisSource:
    """One axis's data. name: a dataset loader (null: the preset's); path: a local file or hub
    id (null: the loader's default); split: null uses the loader's own default split."""

    name: str | None = None
    path: str | None = None
    split: str | None = None
    max_examples: int | None = None


@dataclass
class AxisDataConfig:
    """round_robin: `shortest` stops an epoch at the smallest axis (the reference zips its
    loaders), `longest` cycles the smaller axes so every row of every axis is seen."""

    preset: str = "builtin"
    round_robin: str = "shortest"
    helpfulness: AxisSource = field(default_factory=AxisSource)
    harmlessness: AxisSource = field(default_factory=AxisSource)
    honesty: AxisSource = field(default_factory=AxisSource)

    def __post_init__(self) -> None:
        check_choice("method.data.preset", self.preset, PRESETS)
        check_choice("method.data.round_robin", self.round_robin, ROUND_ROBIN)
        for axis in AXES:
            check(f"method.data.{axis}.max_examples", getattr(self, axis).max_examples, ge=1)

    def loader(self, axis: str) -> str:
        """The dataset loader of `axis`: its own name, else the preset's."""
        return getattr(self, axis).name or PRESETS[self.preset][axis]
