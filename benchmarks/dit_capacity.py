"""Can a DiT design learn the foley world? Stage 1 from a random demo init with the DiT you name, then renders.

The cheap check behind the demo's DiT design (docs/demo-model.md, "The DiT ignores its conditioning"): N clips
of the foley world (``--clips 19``: one per class, the memorisation check), a random demo-dims model whose DiT has
the given heads, head width and layers, stage 1 (bridge and DiT, the LLM nearly frozen as in the recipe) for
``--steps``, then ``caption_renders`` on the same clips (``--split train``: the memorisation check) and
optionally on held-out captions (``--test-clips``). Reports the DiT's size, seconds per step, the flow loss (mean
of the last 10 % of steps),
the conditioning gain at σ 0.95 (``benchmarks/conditioning_use.py``: how much lower the flow loss is with a
clip's own tokens than with another clip's) and the share of renders the classifier hears as the caption's class.

    python -m benchmarks.dit_capacity --work /tmp/dit --heads 8 --steps 800 --clips 19

Measured limit: on 600 clips a random LLM's bridge states carry too little of the caption for any DiT to use
them (renders at chance, conditioning gain 0-1 %), so designs are best compared from the recipe's pretrained
planner: ``--base WORK/planner`` (a ``train demo`` work folder's) starts from it with the DiT swapped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.report import write_json_report


def make_data(work: Path, n_clips: int, class_captions: bool = False) -> Any:
    """The foley world's training manifests with ``n_clips`` clips (kept across runs: they are deterministic);
    with ``class_captions`` the clips manifest captions every clip by its class name (a diagnostic: one semantic
    target per class)."""
    from audiostory_cli.demo.recipe import DEMO_SAMPLE_RATE
    from audiostory_cli.foley.corpus import MANIFEST_NAMES, ManifestPaths, write_manifests
    from audiostory_cli.fsutil import write_text_atomic
    from benchmarks.caption_renders import class_caption

    root = work / f"data-{n_clips}"
    paths = ManifestPaths(root, *(root / MANIFEST_NAMES[k] for k in ("clips", "qa", "stories")))
    if not all(p.is_file() for p in (paths.clips, paths.qa, paths.stories)):
        paths = write_manifests(root, split="train", n_stories=1, n_clips=n_clips, sr=DEMO_SAMPLE_RATE, seed=0)
    if not class_captions:
        return paths
    rows = [json.loads(line) for line in paths.clips.read_text(encoding="utf-8").splitlines() if line.strip()]
    named = root / "clips-class-captions.jsonl"  # beside the original: the audio paths are relative to it
    write_text_atomic(named, "".join(json.dumps({**r, "caption": class_caption(r["class"])}) + "\n" for r in rows))
    return replace(paths, clips=named)


def make_init(work: Path, data: Any, dit: dict[str, int], tag: str) -> Path:
    """A random demo model (seed 0) with tokenizers learned on ``data`` and the DiT shape ``dit``."""
    from audiostory_cli.demo.recipe import (
        DEMO_T5_VOCAB,
        build_corpus_tokenizer,
        demo_dims,
        init_model_folder,
        manifest_texts,
    )
    from audiostory_cli.train.t5_tokenizer import build_corpus_t5_tokenizer

    texts = [data.clips, data.qa, data.stories]
    tokenizer = build_corpus_tokenizer(manifest_texts(texts))
    dims = demo_dims(len(tokenizer))
    dims = replace(dims, dit=replace(dims.dit, **dit))
    t5 = build_corpus_t5_tokenizer(manifest_texts(texts), DEMO_T5_VOCAB)
    return init_model_folder(work / f"init-{tag}", tokenizer, dims=dims, seed=0, t5_tokenizer=t5)


def swap_dit(work: Path, base: Path, dit: dict[str, int], tag: str) -> Path:
    """``base`` (e.g. the recipe's pretrained planner), its DiT replaced by a random one (seed 0) of shape ``dit``."""
    import torch

    from audiostory_cli.generator.dit import build_dit
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.train.checkpoint import export_model
    from audiostory_cli.train.t5_tokenizer import resolve_t5_tokenizer

    model = load_model_folder(base, make_runtime("cpu"))
    model.dims = replace(model.dims, dit=replace(model.dims.dit, **dit))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.dit = build_dit(model.dims.dit)
    t5_tokenizer, _ = resolve_t5_tokenizer(str(base), model.dims.text_encoder.vocab_size)
    out = work / f"init-{tag}-from-{base.name}"
    return export_model(out, model, t5_tokenizer, base_model=str(base), info_extra={"dit_swapped": tag})


def train_stage_1(init: Path, run: Path, data: Any, args: argparse.Namespace) -> Any:
    from audiostory_cli.train.config import TrainConfig
    from audiostory_cli.train.manifest import ManifestSpec
    from audiostory_cli.train.stage_task import train
    from audiostory_cli.train.stages import resolve_loss_weights

    config = TrainConfig(
        stage="1",
        data=(ManifestSpec(data.clips, "clips"),),
        out=run,
        model=str(init),
        steps=args.steps,
        batch_size=args.batch_size,
        lr_llm=args.lr_llm,
        lr_bridge=1e-3,
        lr_dit=args.lr_dit,
        warmup=min(20, args.steps - 1),
        save_every=args.steps,
        keep_checkpoints=1,
        seed=0,
        device="cpu",
        mixed_precision="no",
        cache_dir=args.work / "features",
        ema_decay=args.ema_decay,
        logit_mean=args.logit_mean,
        loss_weights=resolve_loss_weights("paper", lm=0.0),
    )
    return train(config, log=lambda m: print(m, file=sys.stderr))


def tail_mean(metrics: Path, key: str) -> float:
    """Mean of ``key`` over the last 10 % of a run's steps (its ``metrics.jsonl``)."""
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    values = [row[key] for row in rows if key in row]
    tail = values[-max(len(values) // 10, 1) :]
    return sum(tail) / len(tail)


def dit_parameters(folder: Path) -> int:
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime

    model = load_model(str(folder), make_runtime("cpu"))
    return sum(p.numel() for p in model.dit.parameters())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.caption_renders import measure as renders
    from benchmarks.conditioning_use import measure as conditioning_use

    dit = {
        "num_attention_heads": args.heads,
        "attention_head_dim": args.head_dim,
        "num_layers": args.layers,
        "num_single_layers": args.single_layers,
    }
    tag = f"h{args.heads}x{args.head_dim}-l{args.layers}+{args.single_layers}"
    data = make_data(args.work, args.clips, args.class_captions)
    if args.base:
        init = swap_dit(args.work, args.base, dit, tag)
    else:
        init = make_init(args.work, data, dit, f"{tag}-class-captions" if args.class_captions else tag)
    options = f"c{args.clips}-s{args.steps}-lr{args.lr_dit:g}-llm{args.lr_llm:g}-ema{args.ema_decay:g}"
    options += f"-u{args.logit_mean:g}" if args.logit_mean else ""
    options += "-class-captions" if args.class_captions else ""
    options += f"-{args.base.name}" if args.base else ""
    run = args.work / f"run-{tag}-{options}"
    result = train_stage_1(init, run, data, args)
    report: dict[str, Any] = {
        "dit": dit,
        "width": args.heads * args.head_dim,
        "dit_parameters": dit_parameters(run),
        "clips": args.clips,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr_dit": args.lr_dit,
        "lr_llm": args.lr_llm,
        "ema_decay": args.ema_decay,
        "logit_mean": args.logit_mean,
        "class_captions": args.class_captions,
        "seconds_per_step": result.seconds_per_step,
        "flow_loss": tail_mean(run / "metrics.jsonl", "loss/flow"),
        "last_losses": result.last,
        "model": str(run),
        "base": str(args.base) if args.base else None,
    }
    report["conditioning"] = conditioning_use(str(run), data.clips, 3, 16, 0)["losses"]
    if args.render_clips:
        n_train = min(args.clips, args.render_clips)
        train_renders = renders(
            str(run), n_train, 0, "train", args.guidance, as_trained=True, class_names=args.class_captions
        )
        report["heard_train"] = train_renders["heard_as_caption_class"]
        report["rows_train"] = train_renders["rows"]
    if args.test_clips:
        test_renders = renders(
            str(run), args.test_clips, 0, "test", args.guidance, as_trained=True, class_names=args.class_captions
        )
        report["heard_test"] = test_renders["heard_as_caption_class"]
        report["rows_test"] = test_renders["rows"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for data, models and runs (kept)")
    parser.add_argument("--base", type=Path, help="start from this model folder, its DiT swapped (default: random)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2, help="double-stream (joint) blocks")
    parser.add_argument("--single-layers", type=int, default=4, help="single-stream blocks")
    parser.add_argument("--clips", type=int, default=19, help="training clips (19: the memorisation check)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr-dit", type=float, default=1e-3)
    parser.add_argument(
        "--lr-llm",
        type=float,
        default=1e-5,
        help="LLM learning rate (the recipe's 1e-5 keeps a random LLM random: its states then carry little of the "
        "caption; 1e-3 lets it learn to)",
    )
    parser.add_argument("--ema-decay", type=float, default=0.0, help="export an EMA of the weights (0: off)")
    parser.add_argument(
        "--class-captions",
        action="store_true",
        help="train on (and render) class names instead of captions: is a consistent code learned? (diagnostic)",
    )
    parser.add_argument("--logit-mean", type=float, default=0.0, help="noise levels σ = 1 − sigmoid(u), u ~ N(this, 1)")
    parser.add_argument("--render-clips", type=int, default=38, help="training clips rendered (0: none)")
    parser.add_argument("--test-clips", type=int, default=0, help="held-out captions rendered too (0: none)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance (default: the render default)")
    parser.add_argument("--out", type=Path, help="JSON report (default: $AUDIOSTORY_CACHE/benchmarks/)")
    args = parser.parse_args(argv)
    result = measure(args)
    out = write_json_report(result, args.out, "dit-capacity.json")
    train = f"{result['heard_train']:.0%}" if "heard_train" in result else "-"
    test = f"{result['heard_test']:.0%}" if "heard_test" in result else "-"
    high = result["conditioning"]["0.95"]
    gain = 1 - high["own"] / high["other clip"]
    print(f"{'width':>5} {'layers':>6} {'params':>7} {'s/step':>6} {'flow':>6} {'gain':>5} {'train':>6} {'test':>5}")
    print(
        f"{result['width']:>5} {args.layers:>3}+{args.single_layers:<2} {result['dit_parameters'] / 1e6:>6.1f}M "
        f"{result['seconds_per_step']:>6.2f} {result['flow_loss']:>6.3f} {gain:>5.0%} "
        f"{train:>6} {test:>5}"
    )
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
