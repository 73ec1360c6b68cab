"""The paper report: MLflow runs -> results table (Markdown, CSV) and figures (PNG).

    python experiments/report.py --uri sqlite:///mlflow.db --experiment paper_grid \
        [--delta-experiment factual_dpo_delta_grid] [--out outputs/reports/paper_grid]

Every number comes from MLflow. A grid cell is the run's `grid_cell` tag (conf/experiment/
grid_*.yaml), else `<method>` or `<method>_grit` from the method/optimizer tags; seeds of the
same (model, cell) are averaged (mean, std and n in the CSV). The report is also logged as
artifacts of a parent run (tag kind=report) in the same experiment, reused on re-runs.

Columns: AQI (--aqi-metric, default the chi_sil overall score), dAQI = AQI - the same model's
baseline AQI, time = train/train_runtime in minutes, peak memory = train/peak_memory_gb,
efficiency = dAQI per training hour (AQI points x 100 for chi_sil, whose range is [0, 1]).

Risk preflight (risk=preflight or a risk.gate): every run that ran one, its forecast (collapse
step against the planned steps, overlap, eps_hat, gamma_hat, the gate's verdict) beside the
safety metrics measured after training (RISK_MEASURED; "skipped" runs were never trained). It is
a section of results.md when present; `--risk` writes it alone (risk.md, risk.csv), for sweeps
without evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

CELLS = ["baseline", "sft", "sft_grit", "dpo", "dpo_grit", "cita", "cita_grit"]
LABELS = {
    "baseline": "Baseline",
    "sft": "SFT",
    "sft_grit": "SFT+GRIT",
    "dpo": "DPO",
    "dpo_grit": "DPO+GRIT",
    "cita": "CITA",
    "cita_grit": "CITA+GRIT",
}
TIME, MEMORY = "train/train_runtime", "train/peak_memory_gb"
SWEEP_METRICS = ("eval/aqi/chi_sil/overall", "eval/truthfulqa/mc2", "eval/truthfulqa/mc1")
RISK_FORECAST = ("risk/collapse_step", "risk/planned_steps", "risk/overlap", "risk/eps_hat",
                 "risk/gamma_hat")  # fmt: skip
RISK_MEASURED = ("eval/aqi/chi_sil/overall", "eval/judge/safety/safety_score", "train/loss")


def load_runs(client: MlflowClient, experiment: str) -> pd.DataFrame:
    """One row per finished run: tags (model, cell, method, seed, delta) and every metric."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r}")
    rows = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"):
        tags = run.data.tags
        if tags.get("kind") in ("report", "sweep"):  # the report's own run, a sweep's parent run
            continue
        method, optimizer = tags.get("method", "?"), tags.get("optimizer", "")
        cell = tags.get("grid_cell") or (f"{method}_grit" if optimizer == "grit" else method)
        if "grid_cell" not in tags and tags.get("delta") is not None:
            cell += f" (Δ={tags['delta']})"  # one row per point of a Factual-DPO sweep
        row = {"run_id": run.info.run_id, "model": tags.get("model", "?"), "cell": cell}
        row |= {"method": method, "seed": tags.get("seed"), "delta": tags.get("delta")}
        rows.append(row | run.data.metrics)
    return pd.DataFrame(rows)


def risk_table(client: MlflowClient, experiment: str) -> pd.DataFrame:
    """One row per run with a preflight: forecast beside measured safety (NaN: not measured)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r}")
    rows = []
    for run in client.search_runs([exp.experiment_id]):
        tags, metrics = run.data.tags, run.data.metrics
        if "risk_gate" not in tags:
            continue
        row = {"model": tags.get("model", "?"), "method": tags.get("method", "?")}
        row |= {"optimizer": tags.get("optimizer", "?"), "lr": run.data.params.get("optimizer.lr")}
        row |= {"gate": tags["risk_gate"], "status": run.info.status}
        row |= {k: metrics.get(k, np.nan) for k in (*RISK_FORECAST, *RISK_MEASURED)}
        rows.append(row)
    columns = ["model", "method", "optimizer", "lr", "gate", "status", *RISK_FORECAST]
    return pd.DataFrame(rows, columns=[*columns, *RISK_MEASURED])


def risk_markdown(table: pd.DataFrame) -> str:
    head = ["model", "method", "lr", "collapse step", "planned", "gate", "overlap", "eps_hat",
            "gamma_hat", *(m.removeprefix("eval/") for m in RISK_MEASURED)]  # fmt: skip
    lines = ["## Risk preflight: forecast vs measured", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for r in table.to_dict("records"):
        step = r["risk/collapse_step"]
        collapse = "none" if pd.isna(step) else str(int(step))
        cells = [r["model"], r["method"], str(r["lr"]), collapse, _fmt(r["risk/planned_steps"], 0)]
        cells += [r["gate"], _fmt(r["risk/overlap"]), _fmt(r["risk/eps_hat"], 4)]
        cells += [_fmt(r["risk/gamma_hat"], 4), *(_fmt(r[m]) for m in RISK_MEASURED)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_table(runs: pd.DataFrame, aqi: str) -> pd.DataFrame:
    """(model, cell) -> AQI mean/std/n, dAQI vs the model's baseline, time, memory, efficiency."""
    if aqi not in runs:
        raise SystemExit(f"no run has the metric {aqi!r}; run evaluate.py first")
    for col in (TIME, MEMORY):
        if col not in runs:
            runs[col] = np.nan
    grouped = runs.groupby(["model", "cell"])
    table = grouped[aqi].agg(aqi="mean", aqi_std="std", n="count")
    table["minutes"] = grouped[TIME].mean() / 60
    table["peak_gb"] = grouped[MEMORY].mean()
    table = table.reset_index()
    base = table[table.cell == "baseline"].set_index("model")["aqi"]
    table["delta_aqi"] = table["aqi"] - table["model"].map(base)
    scale = 100.0 if "chi_sil" in aqi else 1.0
    hours = table["minutes"] / 60
    table["efficiency"] = np.where(hours > 0, table["delta_aqi"] * scale / hours, np.nan)
    order = {c: i for i, c in enumerate(CELLS)}
    table["order"] = table["cell"].map(lambda c: order.get(c, len(CELLS)))
    table = table.sort_values(["model", "order"]).drop(columns="order")
    table.insert(2, "method", table["cell"].map(lambda c: LABELS.get(c, c)))
    return table.reset_index(drop=True)


def _fmt(value: float, places: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{places}f}"


def to_markdown(table: pd.DataFrame, aqi: str) -> str:
    head = (
        "| model | method | AQI | ΔAQI vs baseline | time (min) | peak mem (GB) | efficiency | n |"
    )
    lines = [f"AQI metric: `{aqi}` (mean ± std over seeds).", "", head, "|" + "---|" * 8]
    for r in table.itertuples():
        std = "" if pd.isna(r.aqi_std) else f" ± {r.aqi_std:.3f}"
        cells = [r.model, r.method, _fmt(r.aqi) + std, _fmt(r.delta_aqi), _fmt(r.minutes, 1)]
        cells += [_fmt(r.peak_gb, 2), _fmt(r.efficiency, 2), str(r.n)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bars(
    table: pd.DataFrame,
    column: str,
    title: str,
    ylabel: str,
    path: Path,
    cells: list[str] | None = None,
) -> Path:
    """Grouped bars: one group per cell, one bar per model."""
    data = table if cells is None else table[table.cell.isin(cells)]
    pivot = data.pivot_table(index="cell", columns="model", values=column)
    pivot = pivot.reindex(
        [c for c in CELLS if c in pivot.index] + [c for c in pivot.index if c not in CELLS]
    )
    fig = Figure(figsize=(max(6, 1.2 * len(pivot)), 4))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(pivot.columns))
    for k, model in enumerate(pivot.columns):
        ax.bar(np.arange(len(pivot)) + k * width, pivot[model], width, label=model)
    ax.set_xticks(np.arange(len(pivot)) + 0.4 - width / 2, [LABELS.get(c, c) for c in pivot.index])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def grit_effect(table: pd.DataFrame) -> pd.DataFrame:
    """AQI(method+GRIT) - AQI(method) per base method and model."""
    rows = []
    for base in ("sft", "dpo", "cita"):
        for model, group in table.groupby("model"):
            a, b = group[group.cell == base]["aqi"], group[group.cell == f"{base}_grit"]["aqi"]
            if len(a) and len(b):
                rows.append(
                    {"model": model, "cell": base, "grit_effect": float(b.iloc[0] - a.iloc[0])}
                )
    return pd.DataFrame(rows, columns=["model", "cell", "grit_effect"])


def pairs_figure(table: pd.DataFrame, path: Path) -> Path:
    """Method pairs (AdamW vs GRIT) as dumbbells: one panel per model."""
    models = sorted(table.model.unique())
    fig = Figure(figsize=(4 * len(models), 3.6))
    for k, model in enumerate(models, start=1):
        ax = fig.add_subplot(1, len(models), k)
        group = table[table.model == model].set_index("cell")["aqi"]
        for x, base in enumerate(("sft", "dpo", "cita")):
            if base in group and f"{base}_grit" in group:
                ys = [group[base], group[f"{base}_grit"]]
                ax.plot([x, x], ys, color="grey", zorder=1)
                ax.scatter([x], ys[:1], color="C0", label="AdamW" if x == 0 else None, zorder=2)
                ax.scatter([x], ys[1:], color="C3", label="GRIT" if x == 0 else None, zorder=2)
        if "baseline" in group:
            ax.axhline(
                group["baseline"], color="black", linestyle="--", linewidth=0.8, label="baseline"
            )
        ax.set_xticks(range(3), ["SFT", "DPO", "CITA"])
        ax.set(title=model, ylabel="AQI")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def efficiency_figure(table: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(10, 4))
    axes = (("minutes", "training time (min)"), ("peak_gb", "peak memory (GB)"))
    for k, (col, xlabel) in enumerate(axes, start=1):
        ax = fig.add_subplot(1, 2, k)
        for model, group in table.groupby("model"):
            ax.scatter(group[col], group["aqi"], label=model)
            for r in group.itertuples():
                ax.annotate(r.method, (getattr(r, col), r.aqi), fontsize=7)
        ax.set(xlabel=xlabel, ylabel="AQI")
        ax.legend(fontsize=7)
    fig.suptitle("Efficiency: cost vs AQI")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def sweep_figure(runs: pd.DataFrame, path: Path) -> Path | None:
    """Factual-DPO Δ sweep: each available metric vs Δ, one line per model (mean over seeds)."""
    runs = runs[(runs.method == "factual_dpo") & runs.delta.notna()].copy()
    metrics = [m for m in SWEEP_METRICS if m in runs and runs[m].notna().any()]
    if runs.empty or not metrics:
        return None
    runs["delta"] = runs["delta"].astype(float)
    fig = Figure(figsize=(4.5 * len(metrics), 3.6))
    for k, metric in enumerate(metrics, start=1):
        ax = fig.add_subplot(1, len(metrics), k)
        for model, group in runs.groupby("model"):
            curve = group.groupby("delta")[metric].mean().sort_index()
            ax.plot(curve.index, curve.values, marker="o", label=model)
        ax.set(xlabel="Δ", ylabel=metric.split("/")[-1], title=metric.removeprefix("eval/"))
        ax.set_xscale("symlog", linthresh=1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def build_report(client: MlflowClient, args: argparse.Namespace, out: Path) -> list[Path]:
    runs = load_runs(client, args.experiment)
    if runs.empty:
        raise SystemExit(f"experiment {args.experiment!r} has no finished runs")
    table = results_table(runs, args.aqi_metric)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    files = [out / "results.csv", out / "results.md"]
    effect = grit_effect(table)
    files.append(_bars(table, "aqi", "AQI by method", "AQI", out / "aqi_by_method.png", CELLS))
    files.append(
        _bars(
            table,
            "delta_aqi",
            "ΔAQI vs baseline",
            "ΔAQI",
            out / "delta_vs_baseline.png",
            [c for c in CELLS if c != "baseline"],
        )
    )
    if not effect.empty:
        files.append(
            _bars(
                effect,
                "grit_effect",
                "GRIT effect per base method",
                "AQI(+GRIT) − AQI",
                out / "grit_effect.png",
            )
        )
    files.append(pairs_figure(table, out / "method_pairs.png"))
    files.append(efficiency_figure(table, out / "efficiency.png"))
    sweep_runs = load_runs(client, args.delta_experiment) if args.delta_experiment else runs
    sweep = sweep_figure(sweep_runs, out / "factual_dpo_delta_sweep.png")
    files += [sweep] if sweep else []
    figures = "\n".join(f"![{p.stem}]({p.name})" for p in files if p.suffix == ".png")
    body = to_markdown(table, args.aqi_metric)
    risk = risk_table(client, args.experiment)
    if not risk.empty:
        risk.to_csv(out / "risk.csv", index=False)
        files.append(out / "risk.csv")
        body += "\n" + risk_markdown(risk)
    (out / "results.md").write_text(f"# {args.experiment}\n\n{body}\n{figures}\n")
    return files


def build_risk_report(client: MlflowClient, experiment: str, out: Path) -> list[Path]:
    """risk.csv and risk.md only (a gated sweep without evaluation suites)."""
    table = risk_table(client, experiment)
    if table.empty:
        raise SystemExit(f"experiment {experiment!r} has no run with a risk preflight")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "risk.csv", index=False)
    (out / "risk.md").write_text(f"# {experiment}\n\n{risk_markdown(table)}")
    return [out / "risk.csv", out / "risk.md"]


def log_report(client: MlflowClient, experiment: str, out: Path) -> str:
    """Log the report folder to the experiment's report run (created once, tag kind=report)."""
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], "tags.kind = 'report'")
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(
            exp.experiment_id, tags={"kind": "report"}, run_name=f"report-{experiment}"
        )
        run_id = run.info.run_id
    client.log_artifacts(run_id, str(out), "report")
    return run_id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--uri", default="sqlite:///mlflow.db", help="MLflow tracking URI")
    p.add_argument("--experiment", default="paper_grid")
    p.add_argument("--delta-experiment", default=None, help="experiment of the Δ sweep")
    p.add_argument("--aqi-metric", default="eval/aqi/chi_sil/overall")
    p.add_argument("--out", default=None, help="default: outputs/reports/<experiment>")
    p.add_argument("--no-log", action="store_true", help="do not log to the report run")
    p.add_argument("--risk", action="store_true", help="only the risk preflight table")
    args = p.parse_args(argv)
    db = args.uri.removeprefix("sqlite:///") if args.uri.startswith("sqlite:///") else None
    if db is not None and not Path(db).is_file():  # MlflowClient would create an empty store
        raise SystemExit(
            f"error: no MLflow store at {db} (give --uri sqlite:///<path> or http://...)"
        )
    client = MlflowClient(args.uri)
    out = Path(args.out or Path("outputs") / "reports" / args.experiment)
    if args.risk:
        files = build_risk_report(client, args.experiment, out)
        print(f"wrote {len(files)} files to {out}\n{(out / 'risk.md').read_text()}")
        return 0
    files = build_report(client, args, out)
    print(f"wrote {len(files)} files to {out}")
    if not args.no_log:
        print(f"logged to MLflow run {log_report(client, args.experiment, out)}")
    print((out / "results.md").read_text().split("\n\n![")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
