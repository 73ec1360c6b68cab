#!/usr/bin/env bash
# The whole study in one command. Each grid is composed and validated first (a dry run that
# prints the cell count); nothing is submitted unless every cell composes.
#
#   ./multirun.sh [--dry-run] [local|slurm] [paper|delta|all] [extra Hydra overrides...]
#
#   paper  the paper plan: 7 methods (Baseline, SFT, SFT+GRIT, DPO, DPO+GRIT, CITA, CITA+GRIT)
#          x 4 models (llama3_8b, mistral_7b, gemma_7b, deepseek_7b)           = 28 cells
#   delta  Factual-DPO++ over Delta {0,2,4,6,8,10,20,30,50,100} x the same 4 models = 40 cells
#   all    both
# local runs the cells one after another on this machine (Hydra's basic launcher); slurm sends
# each grid as ONE Slurm job array (hydra/launcher=slurm; settings in conf/local/default.yaml).
# --dry-run composes and counts every cell and stops there (nothing runs or is submitted).
# Examples:
#   ./multirun.sh --dry-run slurm all tracking=server          (68 cells, nothing submitted)
#   ./multirun.sh slurm all tracking=server
#   ./multirun.sh local paper model=tiny train.max_steps=2      (a 7-cell smoke run)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-.venv/bin/python}
dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=true; shift; fi
where=${1:-local}
grid=${2:-paper}
shift $(( $# >= 2 ? 2 : $# ))

case "$where" in
  local) launcher=() ;;
  slurm) launcher=(hydra/launcher=slurm) ;;
  *) echo "usage: $0 [--dry-run] [local|slurm] [paper|delta|all] [overrides...]" >&2; exit 2 ;;
esac
# Both grids sweep the paper's models (conf/grid/paper_models.yaml); model=<name> narrows them.
case "$grid" in
  paper) sweeps=("experiment=paper_grid") ;;
  delta) sweeps=("experiment=factual_dpo_delta_grid") ;;
  all) sweeps=("experiment=paper_grid" "experiment=factual_dpo_delta_grid") ;;
  *) echo "unknown grid '$grid': paper, delta or all" >&2; exit 2 ;;
esac

total=0
for sweep in "${sweeps[@]}"; do
  # shellcheck disable=SC2086  # $sweep holds several overrides on purpose
  plan=$("$PY" scripts/plan_sweep.py $sweep "${launcher[@]}" "$@")
  count=$(tail -n 1 <<<"$plan")
  echo "dry run: $sweep $*: $count; $(tail -n 2 <<<"$plan" | head -n 1)"
  total=$(( total + ${count%% *} ))
done
if $dry_run; then echo "dry run only: $total cells ($where), nothing submitted"; exit 0; fi
echo "submitting $total cells ($where)"
for sweep in "${sweeps[@]}"; do
  # shellcheck disable=SC2086
  "$PY" train.py -m $sweep "${launcher[@]}" "$@"
done
