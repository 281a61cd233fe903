"""How often `audiostory describe clip.wav` names the sound of a held-out foley clip.

N clips of the foley world's ``test`` split (fresh sound-bank draws, classes in turn, held-out seeds) are written
at the model's sample rate; each is described with no question (a caption, greedy, as the command does) and the
caption is mapped to a foley class by the class keywords ``audiostory eval`` uses. A clip counts as named when
that class is the clip's own.

    python -m benchmarks.describe_accuracy --model demo --clips 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.report import write_json_report


def measure(model_ref: str, n_clips: int, seed: int) -> dict[str, Any]:
    from audiostory_cli.app.understand import describe_audio
    from audiostory_cli.audio.input import read_input_audio
    from audiostory_cli.demo.eval import caption_class
    from audiostory_cli.errors import ModelError
    from audiostory_cli.foley.corpus import write_manifests
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime

    runtime = make_runtime("cpu")
    model = load_model(model_ref, runtime)
    named, per_class, misses = 0, Counter[str](), Counter[str]()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_manifests(
            Path(tmp) / "test", split="test", n_stories=1, n_clips=n_clips, sr=model.sample_rate, seed=seed
        )
        for line in data.clips.read_text(encoding="utf-8").splitlines():
            clip = json.loads(line)
            try:
                answer = describe_audio(read_input_audio(data.clips.parent / clip["audio"]), model).answer
            except ModelError:  # an empty answer: the clip is not named
                answer = ""
            heard = caption_class(answer)
            right = heard == clip["class"]
            named += right
            per_class[clip["class"]] += 1
            if not right:
                misses[clip["class"]] += 1
            rows.append({"class": clip["class"], "caption": clip["caption"], "answer": answer, "heard": heard})
    return {
        "model": model_ref,
        "clips": len(rows),
        "seed": seed,
        "named": named / max(len(rows), 1),
        "per_class_named": {k: 1 - misses[k] / n for k, n in sorted(per_class.items())},
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.clips, args.seed)
    out = write_json_report(result, args.out, "describe-accuracy.json")
    print(f"{'class':<14} named")
    for name, share in result["per_class_named"].items():
        print(f"{name:<14} {share:6.0%}")
    print(f"{'all':<14} {result['named']:6.0%}  ({result['clips']} clips, {result['seconds']:.0f} s)")
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
