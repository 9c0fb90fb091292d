#!/usr/bin/env bash
# Collect Sharpa grasp caches one object scale after another (default: all 9 scales, 10 000 grasps each):
#   bash scripts/sharpa_collect_grasps.sh                 every scale
#   bash scripts/sharpa_collect_grasps.sh 0.8 1.0 1.2     these scales
#   COUNT=2000 bash scripts/sharpa_collect_grasps.sh      another size
# A scale whose cache already holds COUNT grasps or more is skipped, so a stopped run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
SHARED_MENAGERIE="$(cd .. && pwd)/shared/menagerie"
if [ -z "${MENAGERIE_ROOT:-}" ] && [ -d "$SHARED_MENAGERIE" ]; then export MENAGERIE_ROOT="$SHARED_MENAGERIE"; fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
COUNT=${COUNT:-10000}
case "$COUNT" in ''|*[!0-9]*|0) echo "error: COUNT must be a positive integer, got '$COUNT'" >&2; exit 2 ;; esac
[ "$#" -gt 0 ] || set -- 0.8 0.9 1.0 1.1 1.2 1.3 1.4 1.5 1.6
for scale in "$@"; do
  case "$scale" in ''|*[!0-9.]*) echo "error: object scale must be a number such as 1.0, got '$scale'" >&2; exit 2 ;; esac
done
for scale in "$@"; do
  rows=$("$PYTHON" - "$scale" <<'PY'
import sys
from pathlib import Path
import numpy as np
from unilab.caches import CacheSource
path = CacheSource().directory() / f"sharpa_grasp_{float(sys.argv[1]):g}.npy"
print(len(np.load(path, mmap_mode="r")) if path.exists() else 0)
PY
)
  if [ "$rows" -ge "$COUNT" ]; then echo "== scale $scale: cache holds $rows grasps, skipped"; continue; fi
  echo "== scale $scale"
  "$PYTHON" -m unilab collect --config configs/grasp/sharpa_inhand/mujoco.yaml \
    "--env.scale_list=[$scale]" "--count=$COUNT"
done
