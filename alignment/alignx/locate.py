"""Finding a previous AlignX-repro stage-1 result by MLflow run id (`method.stage1_run`)."""

from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException

from alignment.alignx.mocae import SETTINGS_FILE as MOCAE_FILE
from alignment.tracking import resolve_uri
from alignment.tracking.remote import make_client


def locate_stage1(cfg, run_id: str) -> Path:
    """The experts + projector directory of `run_id` (a stage-1 run, or a parent with a stage-1
    child): the run's own output directory when it is on this machine, else its logged
    `adapter` artifact, downloaded once into <cache_dir>/alignx/<run id>/."""
    uri = resolve_uri(cfg.tracking.uri)
    client = make_client(uri)
    key = f"method.stage1_run={run_id}"
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise FileNotFoundError(f"{key}: no such MLflow run in {uri}") from None
    if run.data.tags.get("alignx_stage") != "1":
        query = f"tags.mlflow.parentRunId = '{run_id}' and tags.alignx_stage = '1'"
        children = client.search_runs([run.info.experiment_id], query)
        if not children:
            raise FileNotFoundError(f"{key}: not an AlignX-repro stage-1 run nor the parent of one")
        run = children[0]
    if run.info.status != "FINISHED":
        raise FileNotFoundError(f"{key}: its stage 1 ({run.info.run_id}) is {run.info.status}")
    local = Path(run.data.params.get("output_dir", "")) / "stage1" / "adapter"
    if (local / MOCAE_FILE).is_file():
        return local
    dst = Path(cfg.cache_dir).expanduser() / "alignx" / run.info.run_id
    if not (dst / "adapter" / MOCAE_FILE).is_file():
        dst.mkdir(parents=True, exist_ok=True)
        try:
            client.download_artifacts(run.info.run_id, "adapter", str(dst))
        except (MlflowException, OSError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(f"{key}: no stage-1 adapter to load ({detail})") from None
    return dst / "adapter"
