"""Does a model's conditioning carry the sound's class? A linear probe on the bridge states and the DiT's tokens.

N clips of the foley world (classes in turn) are teacher-forced through the model as `tell` conditions an event
(``Reasoner.bridge_states`` on the clip's caption, then the bridge's fusion), and a ridge regression to the
class is fitted on half of them and scored on the other half (two folds, the best of four penalties). Reported
per feature: the LLM's semantic and residual states (mean over their tokens) and the fused tokens the DiT
attends to (their mean, and all of them). High scores with poor renders say the DiT, not the bridge, loses the
class (docs/demo-model.md).

    python -m benchmarks.bridge_probe --model runs/stage-1 --clips 380 --split train
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import write_json_report

PENALTIES = (0.1, 1.0, 10.0, 100.0)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, n_classes: int, seed: int = 0) -> float:
    """Two-fold accuracy of a ridge regression to one-hot classes on standardised features (best penalty)."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    order = np.random.default_rng(seed).permutation(len(labels))
    half = len(order) // 2
    folds = ((order[:half], order[half:]), (order[half:], order[:half]))
    best = 0.0
    for penalty in PENALTIES:
        scores = []
        for train, test in folds:
            target = np.eye(n_classes)[labels[train]]
            weights = np.linalg.solve(x[train].T @ x[train] + penalty * np.eye(x.shape[1]), x[train].T @ target)
            scores.append(float(((x[test] @ weights).argmax(1) == labels[test]).mean()))
        best = max(best, float(np.mean(scores)))
    return best


def measure(model_ref: str, n_clips: int, seed: int, split: str) -> dict[str, Any]:
    import torch

    from audiostory_cli.foley.corpus import write_manifests
    from audiostory_cli.model import load_model
    from audiostory_cli.planner.layout import PlannedEvent
    from audiostory_cli.planner.prompt import build_instruction
    from audiostory_cli.runtime import make_runtime

    model = load_model(model_ref, make_runtime("cpu"))
    planner = model.planner()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_manifests(
            Path(tmp) / split, split=split, n_stories=1, n_clips=n_clips, sr=model.sample_rate, seed=seed,
            clip_seconds=(0.5, 0.5),
        )  # fmt: skip
        clips = [json.loads(line) for line in data.clips.read_text(encoding="utf-8").splitlines()]
    classes = sorted({c["class"] for c in clips})
    labels = np.array([classes.index(c["class"]) for c in clips])
    features: dict[str, list[np.ndarray]] = {"semantic": [], "residual": [], "fused_mean": [], "fused_all": []}
    with torch.no_grad():
        for clip in clips:
            event = PlannedEvent(clip["caption"], "", 4.0)
            instruction = build_instruction(clip["caption"], 4.0)
            semantic, residual = planner.reasoner.bridge_states(instruction, "", [event])
            fused = planner.bridge(semantic, residual)[0].float()
            features["semantic"].append(semantic[0].float().mean(0).numpy())
            features["residual"].append(residual[0].float().mean(0).numpy())
            features["fused_mean"].append(fused.mean(0).numpy())
            features["fused_all"].append(fused.flatten().numpy())
    scores = {k: probe_accuracy(np.stack(v), labels, len(classes), seed) for k, v in features.items()}
    return {"model": model_ref, "clips": len(clips), "split": split, "seed": seed, "classes": len(classes), **scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clips", type=int, default=380)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--split", choices=("test", "train"), default="train")
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.clips, args.seed, args.split)
    out = write_json_report(result, args.out, "bridge-probe.json")
    print(f"{'model':<30} {'clips':>5} {'semantic':>8} {'residual':>8} {'fused':>6} {'all':>6}")
    print(
        f"{args.model[-30:]:<30} {result['clips']:>5} {result['semantic']:>8.0%} {result['residual']:>8.0%} "
        f"{result['fused_mean']:>6.0%} {result['fused_all']:>6.0%}"
    )
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
