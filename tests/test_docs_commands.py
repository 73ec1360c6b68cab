"""The commands the READMEs and the config comments show are tests.

Every command is extracted from README.md, experiments/README.md (fenced bash blocks and inline
`python ...` spans) and the comments of conf/**/*.yaml, and must appear in COVERAGE with how it
is tested:
  run      executed exactly as written (placeholders such as <run id> filled with a real value)
           in a sandbox directory that mirrors the repository, offline;
  compose  needs a hub model, a GPU or a cluster: composed exactly as written against the schemas
           (a -m sweep through scripts/plan_sweep.py, which composes every cell);
  test     covered by the named test, which must exist.
The --help texts in conf/train.yaml and conf/evaluate.yaml count as config comments.
A new command in the docs without an entry here fails `test_every_documented_command_is_covered`,
and an entry whose command left the docs fails `test_no_stale_entries`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_cfg

DOCS = [REPO / "README.md", REPO / "experiments" / "README.md"]
STARTS = ("python ", "make ", "mlflow ", "./multirun.sh", "sudo ", "cp ", "export ", "bash ")
STARTS += ("torchrun ",)


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        if ch == "#" and quote is None and (i == 0 or line[i - 1] == " "):
            break
        out.append(ch)
    return "".join(out).strip()


def _from_markdown(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = _strip_comment(line.strip())
            if line.startswith(STARTS):
                commands.append(" ".join(line.split()))
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if span.startswith(("python ", "./multirun.sh ", "mlflow ")):
            commands.append(" ".join(span.split()))
    return commands


def _from_yaml_comments(text: str) -> list[str]:
    commands = []
    for line in text.splitlines():  # comments and the --help texts (header/footer) alike
        spans = [s for s in re.findall(r"`([^`]+)`", line) if s.startswith(("python ", "./"))]
        if spans:  # a command quoted inside prose
            commands += [" ".join(s.split()) for s in spans]
            continue
        match = re.search(r"(python (?:train|evaluate)\.py.*|\./multirun\.sh.*)", line)
        if match:
            command = re.sub(r"\s+\(.*\)\s*$", "", match.group(1))  # a trailing "(4 jobs)" note
            command = command.replace(" [overrides]", "")
            commands.append(" ".join(_strip_comment(command).split()))
    return commands


def documented_commands() -> dict[str, str]:
    """command -> where it is shown (the first place)."""
    found: dict[str, str] = {}
    for path in DOCS:
        for command in _from_markdown(path.read_text()):
            found.setdefault(command, str(path.relative_to(REPO)))
    for path in sorted((REPO / "conf").rglob("*.yaml")):
        for command in _from_yaml_comments(path.read_text()):
            found.setdefault(command, str(path.relative_to(REPO)))
    return found


RUN, COMPOSE, TEST = "run", "compose", "test"
EVAL_README = "tests/evaluation/test_evaluate_e2e.py::test_readme_evaluate_commands_as_written"
MAC_ALIGNX_SMOLLM2 = "tests/test_smollm2_mac_alignx_slow.py::test_plain_command_trains_on_smollm2"
DEMO = (
    "tests/test_smollm2_slow.py::test_the_demo_refuses_held_out_harmful_prompts_and_still_answers"
)
HH_TINY = "tests/test_hh_heldout.py::test_tiny_mode_end_to_end"
# command -> (mode, detail). detail: for `run`, "fast" or "slow"; for `test`, the test's id.
COVERAGE: dict[str, tuple[str, str]] = {
    # README: set-up
    "make demo": (TEST, DEMO),
    "make test": (TEST, ".ci/run"),
    # README: one run
    "python train.py": (TEST, DEMO),
    "python train.py method=cita optimizer=grit model=llama3_8b": (COMPOSE, ""),
    "python train.py method=factual_dpo method.delta=10 dataset=aixpert_factuality": (COMPOSE, ""),
    "python train.py --help": (RUN, "fast"),
    "python train.py --cfg job method=cita": (RUN, "fast"),
    "python evaluate.py run=<mlflow run id> eval=[aqi,truthfulqa]": (TEST, EVAL_README),
    "mlflow ui --backend-store-uri sqlite:///mlflow.db": (RUN, "slow"),
    "mlflow ui": (RUN, "slow"),
    "python train.py --cfg job": (RUN, "fast"),
    "python evaluate.py --cfg job": (RUN, "fast"),
    "python train.py -m method=dpo,cita model=tiny seed=0,1": (RUN, "slow"),
    "python -m alignment.tracking sync <run dir>": (
        TEST,
        "tests/tracking/test_tracking_outage.py::test_dead_uri_trains_at_once_and_sync_replays_it_later",
    ),
    "python train.py rerun=<mlflow run id>": (
        TEST,
        "tests/test_rerun.py::test_rerun_trains_the_same_curve_into_a_new_run",
    ),
    "python train.py rerun=<run id>": (
        TEST,
        "tests/test_rerun.py::test_rerun_trains_the_same_curve_into_a_new_run",
    ),
    # README: stacked runs
    "python train.py experiment=stacked model=tiny train.max_steps=2": (
        TEST,
        "tests/test_stacked.py::test_stacked_command_runs_three_nested_stages",
    ),
    "python train.py method=cita method.reference_free=false "
    "model.init_adapter=run:<mlflow run id>": (
        TEST,
        "tests/test_stacked.py::test_training_from_a_run_id",
    ),
    # README: MAC and AlignX-repro
    "python train.py method=mac": (TEST, MAC_ALIGNX_SMOLLM2),
    "python train.py method=alignx": (TEST, MAC_ALIGNX_SMOLLM2),
    "python train.py method=mac method.lora=true method.zero_init_out_proj=true "
    "method.site=residual_post": (COMPOSE, ""),
    "python train.py method=mac model=mistral_7b method.data.preset=hub": (COMPOSE, ""),
    "python train.py method=alignx method.stage=2 method.stage1_run=<run id> method.mix=adapters": (
        TEST,
        "tests/test_mac_alignx_e2e.py::test_alignx_stage2_alone_from_a_stage1_run_then_evaluate",
    ),
    "python scripts/plan_sweep.py method=mac,alignx model=llama3_8b,mistral_7b": (RUN, "fast"),
    # README: mutation testing
    "python scripts/mutate.py": (TEST, "tests/test_mutations.py::test_no_mutation_survives"),
    # README: hub models and data
    "python train.py model=llama3_8b model.hub_id=meta-llama/Llama-3.1-8B-Instruct": (COMPOSE, ""),
    "python train.py dataset=hh_rlhf dataset.data_dir=helpful-base dataset.max_length=1024": (
        COMPOSE,
        "",
    ),
    "python train.py method=cita dataset=alignment_instructions "
    "dataset.prompt_source=prompt_plus_instruction": (COMPOSE, ""),
    "python train.py dataset=local dataset.path=my.jsonl dataset.columns.prompt=question "
    "dataset.columns.chosen=good dataset.columns.rejected=bad": (RUN, "slow"),
    # README: cluster
    "sudo bash scripts/slurm-local.sh up": (TEST, "tests/cluster/conftest.py"),
    "cp -r conf/local.example conf/local": (TEST, "tests/cluster/test_slurm_local.py"),
    'export "$(scripts/mlflow-server.sh start outputs/studies/study1)"': (
        TEST,
        "tests/cluster/conftest.py",
    ),
    "./multirun.sh slurm all tracking=server": (COMPOSE, ""),
    "python train.py -m hydra/launcher=slurm tracking=server method=dpo,cita "
    "optimizer=adamw,grit model=llama3_8b,mistral_7b,gemma_7b,deepseek_7b": (COMPOSE, ""),
    "python scripts/plan_sweep.py experiment=paper_grid": (RUN, "fast"),
    "mlflow ui --backend-store-uri sqlite:///outputs/studies/study1/mlflow.db": (RUN, "slow"),
    # README: several GPUs or nodes per run
    "torchrun --nproc_per_node=4 train.py model=llama3_8b method=dpo": (
        TEST,
        "tests/test_distributed.py::test_two_ranks_match_one_rank",  # torchrun, 2 ranks on CPU
    ),
    "python train.py -m hydra/launcher=slurm tracking=server hydra.launcher.tasks_per_node=4 "
    "hydra.launcher.gpus_per_node=4 model=qwen2_5_14b method=dpo,cita": (COMPOSE, ""),
    "python train.py -m hydra/launcher=slurm tracking=server hydra.launcher.nodes=2 "
    "hydra.launcher.tasks_per_node=8 hydra.launcher.gpus_per_node=8 train.distributed=fsdp "
    "model=llama3_8b method=dpo": (COMPOSE, ""),
    "python scripts/plan_sweep.py experiment=paper_grid hydra/launcher=slurm "
    "hydra.launcher.tasks_per_node=4 hydra.launcher.gpus_per_node=4": (RUN, "fast"),
    "python train.py -m hydra/launcher=slurm hydra.launcher.tasks_per_node=2 model=tiny "
    "method=dpo,cita": (
        TEST,
        "tests/cluster/test_train_sweep.py::test_two_task_cells_are_one_run_each",
    ),
    "python train.py -m hydra/launcher=local hydra.launcher.tasks_per_node=2 model=tiny "
    "method=dpo": (
        TEST,
        "tests/test_distributed.py::test_local_launcher_runs_each_cell_as_one_two_rank_job",
    ),
    # README: evaluation
    "python train.py model=tiny train.max_steps=2 train.samples=0": (TEST, EVAL_README),
    "python evaluate.py run=<run id> eval=[aqi,truthfulqa]": (TEST, EVAL_README),
    "python evaluate.py adapter=outputs/runs/tiny/dpo-adamw/train.max_steps=2,train.samples=0/"
    "adapter model=tiny eval=[aqi]": (TEST, EVAL_README),
    # As written it scores SmolLM2 on all 817 questions (tens of minutes on 2 cores); the
    # README test runs it with model=tiny in its place.
    "python evaluate.py method=baseline model=smollm2_135m": (TEST, EVAL_README),
    "python experiments/report.py --experiment paper_grid": (RUN, "slow"),
    # README: risk preflight and AlignGuard
    "python train.py risk=preflight regularizer=alignguard method=dpo": (
        TEST,
        "tests/risk/test_risk_smollm2_slow.py::test_guarded_demo_on_smollm2",
    ),
    "python -m alignment.risk model=tiny method=sft optimizer.lr=1e-3": (
        TEST,
        "tests/risk/test_risk_e2e.py::test_standalone_preflight_logs_its_own_run",
    ),
    "python scripts/plan_sweep.py --risk model=tiny optimizer.lr=1e-4,1e3 train.max_steps=2": (
        TEST,
        "tests/risk/test_risk_e2e.py::test_plan_sweep_risk_prints_each_cells_forecast",
    ),
    "python train.py -m model=tiny risk.gate=skip optimizer.lr=1e-4,1e3 train.max_steps=2": (
        TEST,
        "tests/risk/test_risk_e2e.py::test_gated_sweep_skips_the_collapsing_cell_and_trains_the_other",
    ),
    "python experiments/report.py --experiment alignment --risk": (
        TEST,
        "tests/risk/test_risk_e2e.py::test_gated_sweep_skips_the_collapsing_cell_and_trains_the_other",
    ),
    "./multirun.sh slurm all risk.gate=skip": (COMPOSE, ""),
    "python train.py risk=preflight risk.gate=skip": (COMPOSE, ""),
    "python train.py risk=preflight risk.parameter_names='[*.layers.0.self_attn.v_proj.lora_*]'": (
        COMPOSE,
        "",
    ),
    # experiments/README.md
    "python train.py -m experiment=paper_grid eval_after_train=true 'eval=[aqi,truthfulqa]'": (
        COMPOSE,
        "",
    ),
    "python train.py -m experiment=factual_dpo_delta_grid eval_after_train=true "
    "'eval=[aqi,truthfulqa]'": (COMPOSE, ""),
    "python experiments/report.py --uri sqlite:///mlflow.db --experiment paper_grid "
    "--delta-experiment factual_dpo_delta_grid": (RUN, "slow"),
    # As written it trains SmolLM2 on 1,800 HH-RLHF pairs (tens of minutes on 2 cores); the test
    # runs the same script end to end with the tiny model on the real rows (slow) and on
    # synthetic ones (fast).
    "python experiments/hh_heldout.py": (TEST, HH_TINY),
    "python experiments/hh_heldout.py --model tiny --train-rows 16 --heldout-rows 8 --steps 2": (
        TEST,
        HH_TINY,
    ),
    "python experiments/hh_heldout.py --help": (RUN, "fast"),
    # config comments
    "python train.py -m experiment=paper_grid": (COMPOSE, ""),
    "python train.py -m experiment=paper_grid hydra/launcher=slurm": (COMPOSE, ""),
    "python train.py -m experiment=paper_grid model=tiny train.max_steps=2": (RUN, "slow"),
    "python train.py -m experiment=factual_dpo_delta_grid": (COMPOSE, ""),
    "python train.py -m experiment=factual_dpo_delta_grid model=llama3_8b seed=0,1": (COMPOSE, ""),
    "python train.py -m experiment=factual_dpo_delta_grid model=llama3_8b "
    "dataset=aixpert_factuality": (COMPOSE, ""),
    "python train.py -m hydra/launcher=slurm method=dpo,sft seed=0,1": (COMPOSE, ""),
    "python train.py -m hydra/launcher=local method=dpo,sft": (COMPOSE, ""),
    "python evaluate.py run=<mlflow run id>": (COMPOSE, ""),
    "python evaluate.py adapter=<dir> model=<name>": (TEST, EVAL_README),
    "python evaluate.py adapter=<dir> model=<name> eval=[aqi]": (TEST, EVAL_README),
    "python evaluate.py method=baseline model=<name>": (COMPOSE, ""),
    **{
        f"python train.py experiment={cell} model=llama3_8b": (COMPOSE, "")
        for cell in ("grid_baseline", "grid_sft", "grid_sft_grit", "grid_dpo", "grid_dpo_grit")
        + ("grid_cita", "grid_cita_grit")
    },
}


def test_every_documented_command_is_covered():
    missing = {c: where for c, where in documented_commands().items() if c not in COVERAGE}
    assert not missing, f"documented commands with no test (add them to COVERAGE): {missing}"


def test_no_stale_entries():
    stale = set(COVERAGE) - set(documented_commands())
    assert not stale, f"COVERAGE entries no longer in the docs: {sorted(stale)}"


def test_named_tests_exist():
    for command, (mode, detail) in COVERAGE.items():
        if mode != TEST:
            continue
        path, _, name = detail.partition("::")
        assert (REPO / path).exists(), (command, detail)
        if name:
            assert f"def {name}(" in (REPO / path).read_text(), (command, detail)


# ---------------------------------------------------------------- compose exactly as written
PLACEHOLDERS = {"<mlflow run id>": "0123abcd", "<run id>": "0123abcd", "<name>": "tiny"}


def _argv(command: str) -> list[str]:
    for key, value in PLACEHOLDERS.items():
        command = command.replace(key, value)
    return shlex.split(command)


@pytest.mark.parametrize("command", sorted(c for c, (m, _) in COVERAGE.items() if m == COMPOSE))
def test_documented_command_composes(command, tmp_path):
    argv = _argv(command)
    if argv[0] == "./multirun.sh":
        env = {**os.environ, "PYTHON": sys.executable}
        proc = subprocess.run(
            ["bash", "multirun.sh", "--dry-run", *argv[1:]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return
    script, args = argv[1], argv[2:]
    if "-m" in args:  # a sweep: every cell is composed by the dry-run planner
        sys.path.insert(0, str(REPO / "scripts"))
        from plan_sweep import plan

        assert plan([a for a in args if a != "-m"])
        return
    if script == "evaluate.py":
        return _compose_evaluate(args, tmp_path)
    cfg = compose_cfg(args, tmp_path, tmp_path)
    assert cfg.method.name and cfg.model.name


def _compose_evaluate(args: list[str], tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        dcfg = compose("evaluate", overrides=[f"output_dir={tmp_path}", *args])
    assert OmegaConf.to_object(dcfg).eval.suites()


# ---------------------------------------------------------------- run exactly as written
def sandbox(tmp: Path) -> Path:
    """A directory that looks like the repository (entry points, conf, package, scripts) so a
    command runs as written without writing outputs/ or mlflow.db into the real checkout."""
    for name in ("train.py", "evaluate.py", "multirun.sh", "conf", "alignment", "scripts"):
        (tmp / name).symlink_to(REPO / name)
    (tmp / "experiments").mkdir()
    for script in ("report.py", "hh_heldout.py"):
        (tmp / "experiments" / script).symlink_to(REPO / "experiments" / script)
    return tmp


def user_env(cache: Path) -> dict[str, str]:
    """The environment of a user who activated the project's venv (`mlflow` on PATH)."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "ALIGNMENT_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "PYTHON": sys.executable,
        "PATH": venv_bin + os.pathsep + os.environ["PATH"],
    }


def run_as_written(command: str, cwd: Path, cache: Path, timeout: int = 900, **fill: str):
    for key, value in fill.items():
        command = command.replace(key, value)
    env = user_env(cache)
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_fast_commands_run_as_written(tmp_path, cache_dir):
    box = sandbox(tmp_path)
    fast = sorted(c for c, (m, d) in COVERAGE.items() if (m, d) == (RUN, "fast"))
    for command in fast:
        proc = run_as_written(command, box, cache_dir)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    out = run_as_written("python train.py --cfg job method=cita", box, cache_dir).stdout
    assert "kl_estimator: seq_logratio" in out


def _serves(command: str, cwd: Path, cache: Path, port: int = 5000) -> None:
    """Start a documented server command, wait until it answers HTTP, stop it."""
    import time
    import urllib.request

    env = user_env(cache)
    proc = subprocess.Popen(shlex.split(command), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"{command}: no answer on port {port} within 120 s")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_slow_commands_run_as_written(tmp_path, cache_dir):
    box = sandbox(tmp_path)
    done: set[str] = set()

    def check(command: str, **fill: str) -> subprocess.CompletedProcess:
        proc = run_as_written(command, box, cache_dir, **fill)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        done.add(command)
        return proc

    (box / "my.jsonl").write_text(
        "".join(
            f'{{"question": "How do I stay safe online, tip {i}?", "good": "Use a password '
            f'manager and two-factor login.", "bad": "Reuse one password everywhere."}}\n'
            for i in range(12)
        )
    )
    check(
        "python train.py dataset=local dataset.path=my.jsonl dataset.columns.prompt=question "
        "dataset.columns.chosen=good dataset.columns.rejected=bad"
    )
    check("python train.py -m method=dpo,cita model=tiny seed=0,1")
    check("python train.py -m experiment=paper_grid model=tiny train.max_steps=2")
    check("python experiments/report.py --experiment paper_grid")
    for server in ("mlflow ui --backend-store-uri sqlite:///mlflow.db", "mlflow ui"):
        _serves(server, box, cache_dir)
        done.add(server)
    slow = {c for c, (m, d) in COVERAGE.items() if (m, d) == (RUN, "slow")}
    assert slow - done <= {
        "mlflow ui --backend-store-uri sqlite:///outputs/studies/study1/mlflow.db",
        "python experiments/report.py --uri sqlite:///mlflow.db --experiment paper_grid "
        "--delta-experiment factual_dpo_delta_grid",
    }, sorted(slow - done)


def test_the_readme_option_table_lists_every_option_of_its_groups():
    """The README's group table names each YAML option of model/method/optimizer/dataset (a new
    method or model that is not documented fails here)."""
    readme = (REPO / "README.md").read_text()
    for group in ("model", "method", "optimizer", "dataset"):
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{group}` |")]
        listed = set(re.findall(r"`([a-z0-9_]+)`", row.split("|")[2]))
        options = {p.stem for p in (REPO / "conf" / group).glob("*.yaml")}
        assert options <= listed, (group, sorted(options - listed))
