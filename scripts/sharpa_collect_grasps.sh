#!/usr/bin/env bash
# Collect Sharpa grasp caches one object scale after another:
#   bash scripts/sharpa_collect_grasps.sh 0.8 1.0 1.2      (extra flags: COUNT=2000 bash ...)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
[ "$#" -gt 0 ] || { echo "usage: $0 SCALE [SCALE ...]   e.g. $0 0.8 1.0 1.2" >&2; exit 2; }
for scale in "$@"; do
  echo "== scale $scale"
  "$PYTHON" -m unilab collect --config configs/ppo/sharpa_inhand_grasp/mujoco.yaml \
    "--env.scale_list=[$scale]" ${COUNT:+--count=$COUNT}
done
