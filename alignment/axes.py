"""The three alignment axes that MAC's circuit and AlignX's experts are built around, in the
order every axis-indexed tensor (circuit projections, expert weights, `axis` ids) uses."""

AXES = ("helpfulness", "harmlessness", "honesty")
