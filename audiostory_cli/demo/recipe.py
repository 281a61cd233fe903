"""The ``demo`` model: dims, a tokenizer trained on the foley corpus, and the recipe that trains it from scratch.

Everything goes through the same code as any other model and run: the initial random model is a model folder
written by ``train.checkpoint.export_model``; the planner is pretrained by ``train.planner_text`` and the planner,
bridge and DiT trained by ``train.stage_task`` (the ``audiostory train stage`` command) in the paper's stages on
manifests written by ``foley.corpus``, both through the one training engine (``train.engine``).

The demo's latent space is the fixed spectral codec (``generator.codec.SpectralCodec``: normalised log-mel
frames, Griffin-Lim back to audio), declared in its dims and so in its model folder's sidecar; there is no VAE
to train. (An Oobleck VAE trained from scratch on a 2-core CPU never reconstructed more than 37 % of foley clips
recognisably; the codec's round trips are recognised 99 % of the time: ``docs/demo-model.md``.)

The demo's planner starts from random weights, not from a pretrained LLM, so the recipe first pretrains it on the
text of thousands of stories (``train.planner_text``, the ``audiostory train planner`` command): the stand-in for
the language pretraining Qwen2.5 brings to the released model. The paper's stages then adapt it through LoRA.

One command reproduces it: ``audiostory train demo --out DIR`` (``--work DIR`` keeps the data and the runs of
every step; ``--quick`` runs the whole recipe at smoke-test size).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import (
    AudioEncoderDims,
    BridgeDims,
    DiTDims,
    ModelDims,
    ReasonerDims,
    SpectralCodecDims,
    TextEncoderDims,
)
from ..errors import UsageError
from ..progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from ..foley.corpus import ManifestPaths, StoryOptions
    from ..train.config import TrainConfig
    from ..train.manifest import Kind

DEMO_NAME = "demo"
DEMO_SAMPLE_RATE = 16_000
DEMO_BPE_VOCAB = 2048  # BPE merges learned on the corpus, before the chat and AudioStory special tokens
# The T5's tokenizer, learned on the foley data's texts: 98 % of clip captions fit in the 16 semantic tokens their
# T5 target is cut to (the built-in 256-token one cut every caption after ~25 characters, often before its sound)
DEMO_T5_VOCAB = 2048
DEMO_WINDOW_SECONDS = 30.0
PLANNER_STORIES_FILE = "planner_stories.jsonl"  # in the work folder's data/, beside the foley manifests
PLANNER_EDITS_FILE = "planner_edits.jsonl"  # the edit turns (``DemoRecipe.edit_dialogues``)
PLANNER_DATA_FILE = "planner_data.jsonl"  # stories then edit turns: the planner's data when there are edit turns
DEMO_SAVE_EVERY = 200  # a checkpoint every 200 steps, so that an interrupted build (--resume) loses little

Log = Callable[[str], None]

# The demo's codec, chosen by ``benchmarks/spectral_codec.py`` (numbers in docs/demo-model.md, "Spectral codec");
# mean and scale are the log-mel statistics of foley clips, so that latents are about unit variance.
DEMO_CODEC = SpectralCodecDims(
    sampling_rate=DEMO_SAMPLE_RATE,
    n_fft=1024,
    hop_length=256,
    n_mels=64,
    f_min=0.0,
    f_max=8_000.0,
    floor=1e-5,
    mean=-2.8,
    scale=4.6,
    griffin_lim_iters=16,
    momentum=0.99,
    seed=0,
    audio_channels=2,
    frames_per_latent=2,
)


def demo_dims(vocab_size: int, codec: SpectralCodecDims = DEMO_CODEC) -> ModelDims:
    """The demo's dims: every class of ``full_dims()`` at a size a 2-core CPU trains in about three hours.

    The spectral codec (``DEMO_CODEC``: no weights) as the latent space; a 2+4-layer Flux DiT of width 128 with a
    30 s window over the codec's frames; a 4-layer Qwen2 of width 256; 16 + 4 bridge tokens; a 2-layer T5 and
    Whisper.
    """
    return ModelDims(
        reasoner=ReasonerDims(
            hidden_size=256,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=768,
            vocab_size=vocab_size,
            base_vocab_size=vocab_size,
            rope_theta=10_000.0,
            max_position_embeddings=4096,
            lora_r=16,
            lora_alpha=16,
            lora_dropout=0.0,
        ),
        bridge=BridgeDims(
            num_semantic_tokens=16,
            num_residual_tokens=4,
            llm_dim=256,
            projector_hidden=256,
            out_dim=128,
            fusion_heads=4,
            t5_feature_scale=10.0,
        ),
        dit=DiTDims(
            num_layers=2,
            num_single_layers=4,
            num_attention_heads=4,
            attention_head_dim=32,
            in_channels=codec.latent_channels,
            joint_attention_dim=128,
            pooled_projection_dim=128,
            duration_fourier_dim=64,
            max_duration=DEMO_WINDOW_SECONDS,
            audio_seq_len=int(DEMO_WINDOW_SECONDS * codec.sampling_rate / codec.samples_per_latent),
        ),
        text_encoder=TextEncoderDims(
            vocab_size=DEMO_T5_VOCAB, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4
        ),
        vae=None,
        codec=codec,
        audio_encoder=AudioEncoderDims(
            d_model=128,
            num_layers=2,
            num_heads=4,
            ffn_dim=256,
            num_mel_bins=80,
            max_source_positions=1500,
            sampling_rate=16_000,
            num_tokens=8,
            llm_dim=256,
        ),
    )


# -- tokenizer ------------------------------------------------------------------------------------------------


def manifest_texts(paths: list[Path]) -> Iterator[str]:
    """Every text a manifest holds (instructions, reasoning, captions, questions, answers), line by line."""
    keys = ("instruction", "reasoning", "storyline", "caption", "story_detail", "question", "answer")
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                yield from (str(row[k]) for k in keys if k in row)
                yield from (str(h) for h in row.get("history", []))  # an edit line's earlier instructions
                for part in (row, row.get("story") or {}, row.get("edited") or {}):  # edit lines nest plans
                    yield from (str(part[k]) for k in ("prompt", "reasoning") if k in part and part is not row)
                    for event in part.get("events", []):
                        yield from (str(event[k]) for k in keys if k in event)


def build_corpus_tokenizer(texts: Iterator[str] | list[str], bpe_vocab: int = DEMO_BPE_VOCAB) -> Any:
    """A byte-level BPE trained on ``texts`` with the full tokenizer's layout (``planner.tokens``): the BPE
    vocabulary, then the Qwen chat specials, then the 612 AudioStory tokens in the official order."""
    from ..planner.tokens import train_bpe_tokenizer

    return train_bpe_tokenizer(texts, bpe_vocab)


def init_model_folder(
    out: Path, tokenizer: Any, *, dims: ModelDims | None = None, seed: int = 0, t5_tokenizer: Any = None
) -> Path:
    """A model folder with random weights of the demo dims (or ``dims``), the corpus tokenizer and a T5
    tokenizer (default: the built-in tiny one): the starting point that ``audiostory train --model OUT``
    accepts."""
    import torch

    from ..model import AudioStoryModel, build_parts
    from ..train.checkpoint import export_model
    from ..train.t5_tokenizer import build_tiny_t5_tokenizer
    from ..train.vae import unit_variance_init

    dims = dims or demo_dims(len(tokenizer))
    if dims.reasoner.vocab_size != len(tokenizer):
        dims = replace(dims, reasoner=replace(dims.reasoner, vocab_size=len(tokenizer), base_vocab_size=len(tokenizer)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = build_parts(dims, len(tokenizer))
        if "vae" in parts:  # an Oobleck model (the demo's own dims use the spectral codec: nothing to init)
            # Zero VAE biases: with the default bias init the small random decoder's output is mostly one fixed
            # pattern whatever the latent, and pretraining settles on it (docs/demo-model.md, "VAE").
            for name, param in parts["vae"].named_parameters():
                if name.endswith(".bias"):
                    param.data.zero_()
            unit_variance_init(parts["vae"], seed=seed)
    model = AudioStoryModel(name=Path(out).name, dims=dims, tokenizer=tokenizer, **parts)  # type: ignore[arg-type]
    export_model(
        Path(out),
        model,
        t5_tokenizer or build_tiny_t5_tokenizer(dims.text_encoder.vocab_size),
        base_model=f"random init (seed {seed})",
        info_extra={"init_seed": seed},
    )
    return Path(out)


# -- the recipe -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageSteps:
    stage: str
    steps: int
    batch_size: int
    lr_llm: float = 1e-3
    lr_dit: float = 5e-4
    warmup: int = 50
    lm_scope: str | None = None  # None: the stage's own (see train.stages)
    lm_weight: float | None = None  # None: the paper's weight of the LM loss (1.0)
    lr_bridge: float | None = None  # None: lr_llm (the engine's default)


@dataclass(frozen=True)
class DemoRecipe:
    """Sizes and steps of a demo build. ``DemoRecipe()`` is the shipped model's; ``quick_recipe()`` a smoke run."""

    n_clips: int = 600
    n_stories: int = 400  # stories with audio (stage 3)
    n_text_stories: int = 12_000  # text-only stories for the planner pretraining (no audio: cheap)
    # 500 steps were too few on 12,000 stories; 1,100 plan train-style stories right (docs/demo-model.md)
    planner_steps: int = 1100
    planner_batch_size: int = 16
    planner_lr: float = 1e-3
    max_story_seconds: float = 30.0  # so that no event is longer than one DiT window
    # Share of train events narrated by a caption-like description (``StoryOptions.caption_clauses``): 0.3 read
    # held-out classes best; 0 and 0.5 were worse (docs/demo-model.md)
    caption_clauses: float = 0.3
    # Dialogues of synthetic edit turns (``foley.edits``: replace, remove, insert, duration, move, level and
    # distance, with known truth) mixed into the planner's text stories, so that `audiostory edit` works with the
    # model (``train planner`` marks it ``trained_edits``). 0: the planner is not taught to edit.
    edit_dialogues: int = 0
    seed: int = 0
    # Steps sized from per-step times on a 2-core CPU (docs/demo-model.md, "The recipe").
    stages: tuple[StageSteps, ...] = field(
        default_factory=lambda: (
            # Stages 1-warm to 2 train on single clips. At the LLM learning rate of 1e-3 (LoRA, norms and the
            # embeddings) they taught the pretrained planner that a plan has one event, with or without an LM loss:
            # held-out event count 97.5 % after pretraining, 5 % after stage 1 (20 % without the LM loss), 75 % after
            # stage 3 (docs/demo-model.md). So the LLM barely moves there (1e-5) while the bridge learns at 1e-3;
            # stage 3 adapts the LLM on multi-event stories.
            StageSteps("1-warm", 200, 16, lr_llm=1e-5, lr_bridge=1e-3),
            # 3,000 stage-1 steps render held-out captions as their class 42 %, 1,000 steps 16 %, 5,000 39 %
            StageSteps("1", 3000, 8, lr_llm=1e-5, lr_bridge=1e-3, lm_weight=0.0),
            # Stage 2 keeps the LM weight: it also weighs the QA answers' cross-entropy, the only signal that
            # trains the audio resampler for `describe` (at 0 stage 2 taught the listener nothing).
            StageSteps("2", 150, 8, lr_llm=1e-5, lr_bridge=1e-3),
            # At an LLM learning rate of 1e-3 stage 3 lowered the pretrained planner's held-out plans (count 97.5 %
            # to 77.5 %, class 63 % to 52 %); 1e-4 keeps it closer while the bridge and resampler learn at 1e-3.
            StageSteps("3", 600, 4, lr_llm=1e-4, lr_bridge=1e-3),
        )
    )
    fp16: bool = True  # store LLM, bridge and DiT in fp16 (the package budget is 30 MB)

    def check(self) -> None:
        if self.n_clips < 19 or self.n_stories < 1 or self.n_text_stories < 1:
            raise UsageError("the demo recipe needs at least 19 clips (one per class), 1 story and 1 text story")
        if self.planner_steps < 1:
            raise UsageError(f"planner_steps {self.planner_steps} must be positive")
        if not 10.0 <= self.max_story_seconds <= DEMO_WINDOW_SECONDS:
            raise UsageError(f"max_story_seconds {self.max_story_seconds} must be in 10..{DEMO_WINDOW_SECONDS:g}")
        if self.edit_dialogues < 0:
            raise UsageError(f"edit_dialogues {self.edit_dialogues} must not be negative")
        if not 0.0 <= self.caption_clauses <= 1.0:
            raise UsageError(f"caption_clauses {self.caption_clauses} must be between 0 and 1")
        if not self.stages or self.stages[-1].stage != "3":
            raise UsageError("the demo recipe must end with stage 3 (stories with the reasoning)")


def quick_recipe() -> DemoRecipe:
    """The whole recipe at smoke-test size: every step runs, nothing is learned."""
    return DemoRecipe(
        n_clips=19,
        n_stories=2,
        n_text_stories=4,
        planner_steps=2,
        planner_batch_size=2,
        stages=tuple(StageSteps(s, 2, 2, warmup=0) for s in ("1-warm", "1", "2", "3")),
    )


@dataclass(frozen=True)
class DemoBuild:
    out: Path
    work: Path
    timings: dict[str, float]  # seconds per step of the recipe
    per_step: dict[str, float]  # seconds per optimizer step, per training step of the recipe


def build_demo(
    out: Path,
    work: Path,
    recipe: DemoRecipe = DemoRecipe(),
    *,
    device: str = "auto",
    resume: bool = False,
    progress: ProgressFn = no_progress,
    log: Log = lambda _m: None,
) -> DemoBuild:
    """Reproduce the demo model from nothing: data, tokenizer, random init (spectral codec: nothing to train for
    the latent space), planner pretraining, stages 1-warm..3.

    ``work`` keeps the manifests and each step's run folder (``planner/``, ``stage-1-warm/``...); ``out`` receives
    the final model folder (LLM, bridge and DiT in fp16 when ``recipe.fp16``). With ``resume`` an interrupted
    build goes on: finished steps found in ``work`` are kept and an unfinished stage continues from its last
    checkpoint (or starts over when it saved none).
    """
    recipe.check()
    out, work = Path(out), Path(work)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty; choose a new folder for the demo model")
    build = _DemoBuilder(work, recipe, device=device, resume=resume, progress=progress, log=log)
    data = build.foley_data()
    text_stories = build.text_stories()
    init = build.random_model(data, text_stories)
    planner = build.pretrained_planner(init, text_stories)
    trained = build.stages(planner, data)
    build.timed(
        "package", lambda: package_model(trained, out, fp16=recipe.fp16, info_extra={"demo_recipe": asdict(recipe)})
    )
    return DemoBuild(out=out, work=work, timings=build.timings, per_step=build.per_step)


class _DemoBuilder:
    """The steps of ``build_demo``; each keeps a finished result found in ``work`` when resuming."""

    def __init__(
        self, work: Path, recipe: DemoRecipe, *, device: str, resume: bool, progress: ProgressFn, log: Log
    ) -> None:
        self.work, self.recipe, self.device, self.resume = work, recipe, device, resume
        self.progress, self.log = progress, log
        self.timings: dict[str, float] = {}  # seconds per step of the recipe
        self.per_step: dict[str, float] = {}  # seconds per optimizer step, per training step
        self.options = _story_options(recipe)

    def timed(self, name: str, run: Callable[[], Any]) -> Any:
        import time

        start = time.perf_counter()
        result = run()
        self.timings[name] = time.perf_counter() - start
        return result

    # 1. the foley world: clips, QA and stories of the train split at the demo's rate
    def foley_data(self) -> ManifestPaths:
        from ..foley.corpus import write_manifests

        recipe = self.recipe
        data = _finished_data(self.work / "data", recipe) if self.resume else None
        if data is not None:
            self.log(f"foley data kept from {data.root}")
            return data
        data = self.timed(
            "data",
            lambda: write_manifests(
                self.work / "data",
                split="train",
                n_stories=recipe.n_stories,
                n_clips=recipe.n_clips,
                sr=DEMO_SAMPLE_RATE,
                seed=recipe.seed,
                progress=self.progress,
                options=self.options,
                overwrite=self.resume,
            ),
        )
        self.log(f"foley data: {recipe.n_clips} clips, {recipe.n_stories} stories in {data.root}")
        return data

    # 2. the text-only stories the planner pretrains on (another stream of the same train split), and edit turns
    def text_stories(self) -> Path:
        from ..foley.corpus import write_story_texts

        recipe, data = self.recipe, self.work / "data"
        stories = data / PLANNER_STORIES_FILE
        if not (self.resume and _line_count(stories) == recipe.n_text_stories):
            self.timed(
                "text-stories",
                lambda: write_story_texts(
                    stories, split="train", n_stories=recipe.n_text_stories, seed=recipe.seed, options=self.options
                ),
            )
            self.log(f"{recipe.n_text_stories} text-only stories in {stories}")
        if not recipe.edit_dialogues:
            return stories
        return self._with_edit_turns(stories, data / PLANNER_EDITS_FILE, data / PLANNER_DATA_FILE)

    def _with_edit_turns(self, stories: Path, edits: Path, combined: Path) -> Path:
        """The stories file followed by ``edit_dialogues`` dialogues of edit turns: what the planner learns."""
        from ..foley.edits import write_edit_turns
        from ..fsutil import write_text_atomic

        recipe = self.recipe
        if self.resume and combined.is_file() and edits.is_file():
            return combined
        write_edit_turns(
            edits, split="train", n_dialogues=recipe.edit_dialogues, seed=recipe.seed, options=self.options
        )
        text = stories.read_text(encoding="utf-8") + edits.read_text(encoding="utf-8")
        write_text_atomic(combined, text)
        self.log(f"{_line_count(edits)} edit turns ({recipe.edit_dialogues} dialogues) added in {combined}")
        return combined

    # 3. tokenizer on the corpus, random model of the demo dims
    def random_model(self, data: ManifestPaths, text_stories: Path) -> Path:
        init = self.work / "init"
        if self.resume and _is_model_folder(init):
            self.log(f"random {DEMO_NAME} model kept from {init}")
            return init

        def make() -> Path:
            from ..train.t5_tokenizer import build_corpus_t5_tokenizer

            tokenizer = build_corpus_tokenizer(manifest_texts([data.clips, data.qa, data.stories, text_stories]))
            t5_tokenizer = build_corpus_t5_tokenizer(manifest_texts([data.clips, data.qa, data.stories]), DEMO_T5_VOCAB)
            folder = init_model_folder(init, tokenizer, seed=self.recipe.seed, t5_tokenizer=t5_tokenizer)
            self.log(f"random {DEMO_NAME} model ({len(tokenizer)} tokens) in {folder}")
            return folder

        return self.timed("init", make)

    # 4. planner pretraining on the text stories (every LLM weight)
    def pretrained_planner(self, init: Path, text_stories: Path) -> Path:
        from ..train.planner_text import PlannerTrainConfig, pretrain_planner

        recipe, planner = self.recipe, self.work / "planner"
        if self.resume and _is_model_folder(planner):
            self.log(f"pretrained planner kept from {planner}")
            return planner
        config = PlannerTrainConfig(
            model=init,
            stories=text_stories,
            out=planner,
            steps=recipe.planner_steps,
            batch_size=recipe.planner_batch_size,
            lr=recipe.planner_lr,
            warmup=min(100, recipe.planner_steps - 1),
            save_every=DEMO_SAVE_EVERY,
            seed=recipe.seed,
            device=self.device,
            resume=self.resume,
        )
        result = self.timed("planner", lambda: pretrain_planner(config, progress=self.progress, log=self.log))
        self.per_step["planner"] = result.seconds_per_step
        return planner

    # 5. the paper's stages, each starting from the previous one's model folder (the codec is fixed: no VAE step)
    def stages(self, model: Path, data: ManifestPaths) -> Path:
        from ..train.stage_task import train

        for spec in self.recipe.stages:
            run = self.work / f"stage-{spec.stage}"
            if self.resume and _is_model_folder(run):
                self.log(f"stage {spec.stage} kept from {run}")
            else:
                config = self._stage_config(spec, model, run, data)
                self.timed(f"stage-{spec.stage}", partial(train, config, progress=self.progress, log=self.log))
                self.per_step[f"stage-{spec.stage}"] = self.timings[f"stage-{spec.stage}"] / spec.steps
            model = run
        return model

    def _stage_config(self, spec: StageSteps, model: Path, run: Path, data: ManifestPaths) -> TrainConfig:
        from ..train.config import TrainConfig
        from ..train.manifest import ManifestSpec
        from ..train.stages import resolve_loss_weights

        by_stage: dict[str, list[tuple[Kind, Path]]] = {
            "1-warm": [("clips", data.clips)],
            "1": [("clips", data.clips)],
            "2": [("clips", data.clips), ("qa", data.qa)],
            "3": [("stories", data.stories), ("qa", data.qa)],
        }
        return TrainConfig(
            stage=spec.stage,
            data=tuple(ManifestSpec(p, k) for k, p in by_stage[spec.stage]),
            out=run,
            model=str(model),
            steps=spec.steps,
            batch_size=spec.batch_size,
            lr_llm=spec.lr_llm,
            lr_bridge=spec.lr_bridge,
            lr_dit=spec.lr_dit,
            warmup=min(spec.warmup, spec.steps - 1),
            save_every=max(min(spec.steps, DEMO_SAVE_EVERY), 1),
            keep_checkpoints=1,
            resume=self.resume,
            seed=self.recipe.seed,
            device=self.device,
            mixed_precision="auto",
            cache_dir=self.work / "features",
            lm_scope=spec.lm_scope,
            loss_weights=resolve_loss_weights("paper", lm=spec.lm_weight),
        )


def _story_options(recipe: DemoRecipe) -> StoryOptions:
    from ..foley.corpus import StoryOptions

    return StoryOptions(max_total=recipe.max_story_seconds, duration_hints=True, caption_clauses=recipe.caption_clauses)


def _line_count(path: Path) -> int:
    """Non-empty lines of a JSONL file (0 when it does not exist)."""
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _is_model_folder(folder: Path) -> bool:
    """A finished step: a model folder is only complete once its ``audiostory.json`` is written (it goes last)."""
    return (folder / "audiostory.json").is_file()


def _finished_data(root: Path, recipe: DemoRecipe) -> ManifestPaths | None:
    """The manifests of an earlier build of the same recipe, or None when ``root`` holds none or other ones."""
    from ..foley.corpus import MANIFEST_NAMES, ManifestPaths

    info_file = root / "foley.json"
    if not info_file.is_file():
        return None
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {info_file} ({exc}); choose a new --work folder") from exc
    wanted = {
        "split": "train",
        "seed": recipe.seed,
        "sr": DEMO_SAMPLE_RATE,
        "n_clips": recipe.n_clips,
        "n_stories": recipe.n_stories,
    }
    if any(info.get(key) != value for key, value in wanted.items()):
        raise UsageError(f"{root} holds foley data of another recipe ({info_file}); choose a new --work folder")
    return ManifestPaths(root, *(root / MANIFEST_NAMES[k] for k in ("clips", "qa", "stories")))


def package_model(source: Path, out: Path, *, fp16: bool, info_extra: dict[str, Any]) -> Path:
    """Copy a trained model folder to ``out`` named ``demo``: LLM, bridge and DiT in fp16 when ``fp16``."""
    import torch

    from ..model import load_model_folder
    from ..runtime import make_runtime
    from ..train.checkpoint import export_model
    from ..train.t5_tokenizer import resolve_t5_tokenizer

    runtime = make_runtime("cpu")
    model = load_model_folder(source, runtime, name=DEMO_NAME)
    model.name = DEMO_NAME
    t5_tokenizer, _ = resolve_t5_tokenizer(str(source), model.dims.text_encoder.vocab_size)
    extra = {**model.extra, **info_extra}
    model.extra = extra
    return export_model(
        out, model, t5_tokenizer, base_model=str(source), info_extra=info_extra, dtype=torch.float16 if fp16 else None
    )


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
