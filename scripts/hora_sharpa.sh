#!/usr/bin/env bash
# HORA on Sharpa Wave, one command: grasp caches for all scales -> teacher -> student -> teacher vs student.
#
#   bash scripts/hora_sharpa.sh [ppo|appo]
#
# Each stage is skipped when its output exists (a cache file per scale; a teacher / student run whose
# run.json says it ended) and resumed from last.ckpt when a run was interrupted. Budgets (in env-steps, so a
# busy machine changes only the wall time) and sizes:
#   TEACHER_STEPS=8200000                          the teacher's budget (the reference's)
#   STUDENT_STEPS=4000000                          the student's budget
#   COUNT=200                                      grasps per scale collected when a cache is missing
#   TEACHER_ARGS="--model.init_args.entropy_coef 0.005"  extra LightningCLI flags of the teacher fit
#   STUDENT_ARGS=...                               extra LightningCLI flags of the student fit
#   EVAL_ARGS="--data.test_episodes 72"            extra flags of both evaluations (default: 240 episodes)
#   SCALES="0.8 1 1.6"                             object scales to cache, train and evaluate on (default: all 9)
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=${1:-ppo}
case "$FAMILY" in ppo|appo) ;; *) echo "usage: $0 [ppo|appo]" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ -z "${MENAGERIE_ROOT:-}" ] && [ -d ../shared/menagerie ]; then export MENAGERIE_ROOT=$(cd ../shared/menagerie && pwd); fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
SCALES=${SCALES:-0.8 0.9 1 1.1 1.2 1.3 1.4 1.5 1.6}
for scale in $SCALES; do
  case "$scale" in *[!0-9.]*|.|*.*.*) echo "error: SCALES must be object scales such as '0.8 1 1.6', got '$scale'" >&2; exit 2 ;; esac
done
[ -n "${SCALES// /}" ] || { echo "error: SCALES is empty; leave it unset for all 9 object scales" >&2; exit 2; }
# shellcheck disable=SC2086
SCALES=$(printf '%g ' $SCALES)  # 1.0 -> 1, as the cache files are named
# shellcheck disable=SC2086
SCALE_LIST=$(printf '%s,' $SCALES); SCALE_ARG="--data.init_args.env.init_args.scale_list=[${SCALE_LIST%,}]"
unilab() { "$PYTHON" -m unilab "$@"; }

# Newest run folder of an algorithm's Sharpa runs, and whether its run.json says it ended (unilab.runs owns both).
newest_run() { "$PYTHON" -m unilab.runs newest --algo "$1" --task sharpa_inhand --sim mujoco; }
ended() { "$PYTHON" -m unilab.runs ended "$1"; }

# fit_stage <log folder> <train flags...>: skip an ended run, resume an interrupted one, else start one.
fit_stage() {
  local folder=$1; shift
  local run; run=$(newest_run "$folder")
  if [ -n "$run" ] && ended "$run"; then
    echo "== $folder: $run has ended, skipping"
  elif [ -n "$run" ] && [ -f "$run/checkpoints/last.ckpt" ]; then
    echo "== $folder: resuming $run"
    unilab train "$@" --resume --load-run "$(basename "$run")"
  else
    echo "== $folder: training"
    unilab train "$@"
  fi
}

echo "== grasp caches"
missing=""
for scale in $SCALES; do
  [ -f "${UNILAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/unilab}/sharpa_grasp_${scale}.npy" ] || missing="$missing $scale"
done
if [ -n "$missing" ]; then COUNT=${COUNT:-200} bash scripts/sharpa_collect_grasps.sh $missing; else echo "all present"; fi

budget() { echo "--trainer.max_epochs=1000000 --trainer.callbacks+=unilab.callbacks.EnvStepBudget --trainer.callbacks.env_steps=$1"; }
# shellcheck disable=SC2086
fit_stage "hora_$FAMILY" --algo "$FAMILY" --task sharpa_inhand --sim mujoco --profile hora "$SCALE_ARG" \
  $(budget "${TEACHER_STEPS:-8200000}") ${TEACHER_ARGS:-}
# shellcheck disable=SC2086
fit_stage hora_distill --algo hora_distill --task sharpa_inhand --sim mujoco "$SCALE_ARG" \
  "--model.teacher.algo_family=$FAMILY" $(budget "${STUDENT_STEPS:-4000000}") ${STUDENT_ARGS:-}

echo "== evaluation"
EVAL_ARGS=${EVAL_ARGS:---data.test_episodes=240}
# shellcheck disable=SC2086
unilab eval --algo "$FAMILY" --task sharpa_inhand --sim mujoco --profile hora --load-run -1 "$SCALE_ARG" $EVAL_ARGS
# shellcheck disable=SC2086
unilab eval --algo hora_distill --task sharpa_inhand --sim mujoco --load-run -1 "$SCALE_ARG" $EVAL_ARGS
"$PYTHON" scripts/compare_eval.py "teacher=$(newest_run "hora_$FAMILY")/eval.json" \
  "student=$(newest_run hora_distill)/eval.json"
echo "== done: this invocation took $((SECONDS / 3600)) h $((SECONDS % 3600 / 60)) min"
