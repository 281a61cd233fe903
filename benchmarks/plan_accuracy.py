"""How well a model plans held-out foley stories, without rendering them: `audiostory eval`'s plan metrics alone.

The same stories `audiostory eval` draws (split, count and seed alike) are planned exactly as `eval` plans them
(greedy, the instruction as written), and scored like its plan rows: event count, class sequence, per-event class,
duration error. No audio is rendered, so a planner change (a training step, a learning rate) is measured in about
a second per story instead of the half minute a rendered eval takes.

    python -m benchmarks.plan_accuracy --model runs/stage-3 --stories 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_json_report


def measure(model_ref: str, n_stories: int, seed: int, split: str = "test") -> dict[str, Any]:
    from audiostory_cli.demo.eval import EvalOptions, eval_stories, plan_and_score, plan_summary, story_options_up_to
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime

    model = load_model(model_ref, make_runtime("cpu"))
    options = EvalOptions(split=split, stories=n_stories, seed=seed, story_options=story_options_up_to(30.0))
    started = time.perf_counter()
    plans = [plan_and_score(n, story, model, options)[1] for n, story in enumerate(eval_stories(options), start=1)]
    return {
        "model": model_ref,
        "split": split,
        "stories": len(plans),
        "seed": seed,
        **plan_summary(plans),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--stories", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.stories, args.seed, args.split)
    out = write_json_report(result, args.out, "plan-accuracy.json")
    print(f"{'model':<30} {'stories':>7} {'count':>6} {'class':>6} {'order':>6} {'dur err':>7}")
    print(
        f"{args.model[-30:]:<30} {result['stories']:>7} {result['event_count_accuracy']:>6.0%} "
        f"{result['event_class_accuracy']:>6.0%} {result['class_sequence_exact']:>6.0%} "
        f"{result['duration_relative_error']:>7.1%}"
    )
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
