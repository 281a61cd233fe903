"""How often a model's renders of held-out foley captions are heard as the caption's class, the planner bypassed.

N clips of the foley world's ``test`` split (``--split train``: captions worded like the training data, which is
how the planner writes them in a story) are drawn (classes in turn); for each, a one-event story is planned
(for its layout and bridge tokens), its event's caption is set to the clip's own caption and its duration to the
clip's (5 s at most), and it is rendered exactly as ``tell`` renders; the independent foley classifier then says
whether the render is heard as the clip's class. This measures the bridge and the DiT alone: the number the demo's
training budget is sized from (docs/demo-model.md).

``--as-trained`` renders each clip in the very form stage 1 trains on (the clip's instruction, no reasoning, no
story detail, the clip's whole duration) instead of around the plan the model writes for it: with a model whose
planner is untrained (``benchmarks/dit_capacity.py``) that text is noise the DiT never saw in training.
``--class-names`` asks for each clip by its class name ("dog bark") instead of its caption: the check of a model
trained on class-name captions (``dit_capacity --class-captions``).

    python -m benchmarks.caption_renders --model runs/stage-1 --clips 38
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.report import write_json_report


def measure(
    model_ref: str,
    n_clips: int,
    seed: int,
    split: str = "test",
    guidance: float | None = None,
    *,
    as_trained: bool = False,
    class_names: bool = False,
) -> dict[str, Any]:
    from audiostory_cli.app.pipeline import PlanOptions, plan_story, render_story
    from audiostory_cli.audio.io import read_audio
    from audiostory_cli.foley.classifier import load_or_train
    from audiostory_cli.foley.corpus import write_manifests
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.story.folder import StoryFolder
    from audiostory_cli.train.sequences import clip_instruction

    classifier = load_or_train()
    runtime = make_runtime("cpu")
    model = load_model(model_ref, runtime)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_manifests(
            Path(tmp) / split, split=split, n_stories=1, n_clips=n_clips, sr=model.sample_rate, seed=seed
        )
        for number, line in enumerate(data.clips.read_text(encoding="utf-8").splitlines(), start=1):
            clip = json.loads(line)
            if class_names:
                clip["caption"] = class_caption(clip["class"])
            seconds = float(clip["duration"]) if as_trained else round(min(float(clip["duration"]), 5.0), 1)
            planned = plan_story(
                clip["caption"], PlanOptions(total_duration=seconds, seed=number, guidance=guidance), model
            )
            event = replace(planned.events[0], caption=clip["caption"], start=0.0, duration=seconds)
            story = replace(planned, events=[event], total_duration=seconds)
            if as_trained:  # the sequence stage 1 trained on: no reasoning, no detail, the clip's own instruction
                event = replace(event, story_detail="")
                instruction = clip_instruction(clip["caption"], seconds)
                story = replace(story, events=[event], instruction=instruction, reasoning="", generated=None)
            folder = StoryFolder(Path(tmp) / f"story-{number}")
            folder.save(story)
            render_story(folder, model, runtime)
            rendered = folder.load().events[0]
            audio, rate = read_audio(folder.resolve(rendered.file))
            heard = classifier.predict(audio[:, : int(rendered.duration * rate)], rate)[0]
            rows.append({"class": clip["class"], "caption": clip["caption"], "heard": heard})
            shutil.rmtree(folder.root)
    right = sum(row["heard"] == row["class"] for row in rows)
    return {
        "model": model_ref,
        "clips": len(rows),
        "split": split,
        "guidance": guidance,  # None: the render default
        "as_trained": as_trained,
        "class_names": class_names,
        "seed": seed,
        "heard_as_caption_class": right / max(len(rows), 1),
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }


def class_caption(name: str) -> str:
    """A foley class as a caption: ``dog_bark`` → "dog bark"."""
    return name.replace("_", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clips", type=int, default=38)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "train"), default="test", help="caption wording (test: held-out)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the render default)")
    parser.add_argument("--as-trained", action="store_true", help="render clips in stage 1's form (see above)")
    parser.add_argument("--class-names", action="store_true", help="ask for each clip by its class name (see above)")
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(
        args.model,
        args.clips,
        args.seed,
        args.split,
        args.guidance,
        as_trained=args.as_trained,
        class_names=args.class_names,
    )
    out = write_json_report(result, args.out, f"caption-renders-{args.split}.json")
    print(f"{'model':<34} {'split':>5} {'clips':>5} {'heard as class':>15}")
    print(f"{args.model[-34:]:<34} {args.split:>5} {result['clips']:>5} {result['heard_as_caption_class']:>15.0%}")
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
