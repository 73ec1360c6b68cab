"""experiments/report.py on synthetic MLflow runs: table values, figures, the report run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPORT = Path(__file__).resolve().parents[2] / "experiments" / "report.py"
AQI = "eval/aqi/chi_sil/overall"


def _report_module():
    spec = importlib.util.spec_from_file_location("report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grid(client: MlflowClient, experiment: str, artifacts: Path) -> None:
    """7 cells x 1 model (2 seeds of DPO), a Factual-DPO delta sweep and a sweep's parent run."""
    exp = client.create_experiment(experiment, artifact_location=artifacts.as_uri())
    parent = client.create_run(exp, tags={"kind": "sweep", "sweep_id": "s1"})
    client.set_terminated(parent.info.run_id)
    cells = {
        "baseline": 0.60,
        "sft": 0.62,
        "sft_grit": 0.65,
        "dpo": 0.70,
        "dpo_grit": 0.72,
        "cita": 0.75,
        "cita_grit": 0.80,
    }
    for cell, aqi in cells.items():
        seeds = (0, 1) if cell == "dpo" else (0,)
        for seed in seeds:
            method, _, grit = cell.partition("_")
            tags = {
                "model": "tiny",
                "method": method,
                "optimizer": "grit" if grit else "adamw",
                "grid_cell": cell,
                "seed": str(seed),
            }
            run = client.create_run(exp, tags=tags)
            value = aqi + (0.02 if seed else 0.0)
            client.log_metric(run.info.run_id, AQI, value)
            if cell != "baseline":
                client.log_metric(run.info.run_id, "train/train_runtime", 1800.0)
                client.log_metric(run.info.run_id, "train/peak_memory_gb", 10.0)
            client.set_terminated(run.info.run_id)
    for delta, mc2 in ((0, 0.30), (10, 0.35), (100, 0.25)):
        tags = {"model": "tiny", "method": "factual_dpo", "optimizer": "adamw", "delta": str(delta)}
        run = client.create_run(exp, tags=tags)
        client.log_metric(run.info.run_id, "eval/truthfulqa/mc2", mc2)
        client.log_metric(run.info.run_id, AQI, 0.7)
        client.set_terminated(run.info.run_id)


def test_report_table_figures_and_parent_run(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    _grid(client, "grid", tmp_path / "artifacts")
    report = _report_module()
    out = tmp_path / "report"
    assert report.main(["--uri", uri, "--experiment", "grid", "--out", str(out)]) == 0
    table = report.results_table(report.load_runs(client, "grid"), AQI).set_index("cell")
    assert table.loc["dpo", "aqi"] == pytest.approx(0.71) and table.loc["dpo", "n"] == 2
    assert table.loc["cita_grit", "delta_aqi"] == pytest.approx(0.20)
    assert table.loc["cita_grit", "minutes"] == pytest.approx(30.0)
    assert table.loc["cita_grit", "efficiency"] == pytest.approx(40.0)  # 20 points / 0.5 h
    assert table.loc["baseline", "delta_aqi"] == 0.0
    assert "?" not in set(table.index) and "?" not in set(table["model"])  # no sweep-parent row
    for name in (
        "aqi_by_method",
        "delta_vs_baseline",
        "grit_effect",
        "method_pairs",
        "efficiency",
        "factual_dpo_delta_sweep",
    ):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    markdown = (out / "results.md").read_text()
    assert "| tiny | CITA+GRIT | 0.800 | 0.200 | 30.0 | 10.00 | 40.00 | 1 |" in markdown
    effect = report.grit_effect(table.reset_index()).set_index("cell")["grit_effect"]
    assert effect["cita"] == pytest.approx(0.05) and effect["dpo"] == pytest.approx(0.01)
    reports = client.search_runs(
        [client.get_experiment_by_name("grid").experiment_id], "tags.kind = 'report'"
    )
    assert len(reports) == 1
    logged = {a.path for a in client.list_artifacts(reports[0].info.run_id, "report")}
    assert "report/results.md" in logged and "report/aqi_by_method.png" in logged
    report.main(["--uri", uri, "--experiment", "grid", "--out", str(out)])  # re-run: same run
    assert len(client.search_runs([reports[0].info.experiment_id], "tags.kind = 'report'")) == 1


def test_report_refuses_a_missing_store_instead_of_creating_one(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="no MLflow store at mlflow.db"):
        _report_module().main(["--experiment", "grid"])
    assert not (tmp_path / "mlflow.db").exists()
