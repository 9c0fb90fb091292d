"""Print evaluation results side by side: ``python scripts/compare_eval.py teacher=<eval.json> student=<eval.json>``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unilab.evaluation import format_table


def main(args: list[str]) -> None:
    if not args or any("=" not in arg for arg in args):
        raise SystemExit(__doc__)
    rows, extras = {}, []
    for arg in args:
        label, path = arg.split("=", 1)
        if not Path(path).is_file():
            raise SystemExit(f"{path} does not exist; run `eval ... --load-run -1` on that run first")
        report = json.loads(Path(path).read_text())
        rows[label] = report["overall"]
        if "latent_mse" in report["overall"]:
            extras.append(f"{label}: latent MSE against the teacher {report['overall']['latent_mse']:.4g}")
    print(format_table(rows))
    for line in extras:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
