"""Does a model's DiT use its conditioning? The flow loss with each clip's own tokens, T5("") and another clip's.

For clips of a manifest, batches are built exactly as stage 1 trains on them (``StageTask``: same sequences, same
cached latents); at each noise level σ the DiT's flow loss is measured three ways: conditioned on the clip's own
fused tokens, on the unconditional T5("") tokens of classifier-free guidance, and on the tokens of another clip of
the batch (rolled by one). A DiT that renders what it is asked has a clearly lower loss with its own tokens,
most of all at high σ, where the caption is all there is to go on; equal losses say it ignores them
(docs/demo-model.md, "The DiT ignores its conditioning"). Seconds, not a render.

    python -m benchmarks.conditioning_use --model runs/stage-1 --clips work/data/clips.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import write_json_report

SIGMAS = (0.2, 0.5, 0.8, 0.95)
CONDITIONS = ("own", "unconditional", "other clip")


def measure(model_ref: str, clips: Path, batches: int, batch_size: int, seed: int) -> dict[str, Any]:
    import torch

    from audiostory_cli.train.config import TrainConfig
    from audiostory_cli.train.engine import RunContext
    from audiostory_cli.train.manifest import ManifestSpec
    from audiostory_cli.train.stage_task import StageTask

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            stage="1",
            data=(ManifestSpec(clips, "clips"),),
            out=Path(tmp) / "run",
            model=model_ref,
            steps=1,
            batch_size=batch_size,
            seed=seed,
            device="cpu",
            mixed_precision="no",
            cond_dropout=0.0,
        )
        task = StageTask(config)
        context = RunContext(
            device=torch.device("cpu"),
            world=1,
            rank=0,
            main=True,
            progress=lambda *_: None,
            log=lambda _m: None,
            main_process_first=contextlib.nullcontext,
        )
        task.prepare(context)
    module = task.module().eval()  # eval: no condition dropout
    sums = {(sigma, name): 0.0 for sigma in SIGMAS for name in CONDITIONS}
    with torch.no_grad():
        for number in range(batches):
            batch = task.batch(number, 1, 0, torch.device("cpu"))
            fused = module.fused_tokens(batch)
            contexts = {
                "own": fused,
                "unconditional": module.uncond[None].expand_as(fused),
                "other clip": fused.roll(1, 0),
            }
            for level, sigma in enumerate(SIGMAS):
                sigmas = torch.full((fused.shape[0],), sigma)
                for name, tokens in contexts.items():  # the same noise for the three conditions
                    generator = torch.Generator().manual_seed(seed * 1_000 + number * len(SIGMAS) + level)
                    loss = module.flow_loss(tokens, batch, generator, sigma=sigmas)
                    sums[(sigma, name)] += float(loss) / batches
    losses = {f"{sigma:g}": {name: sums[(sigma, name)] for name in CONDITIONS} for sigma in SIGMAS}
    return {"model": model_ref, "clips": str(clips), "batches": batches, "batch_size": batch_size, "losses": losses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clips", type=Path, required=True, help="a clips manifest (e.g. the build's training clips)")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.clips, args.batches, args.batch_size, args.seed)
    out = write_json_report(result, args.out, "conditioning-use.json")
    print(f"{'sigma':>5} {'own':>8} {'uncond':>8} {'other':>8} {'gain':>6}")
    for sigma, row in result["losses"].items():
        own, uncond, other = (row[name] for name in CONDITIONS)
        gain = 1 - own / other if other else 0.0
        print(f"{sigma:>5} {own:>8.4f} {uncond:>8.4f} {other:>8.4f} {gain:>6.0%}")
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
