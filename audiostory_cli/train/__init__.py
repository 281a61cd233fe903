"""``audiostory train``: fine-tune the planner LLM (LoRA), the bridge and the DiT in the paper's stages, and
pretrain a from-scratch planner or VAE, all through one engine.

Kept import-light (no torch here); import the module you need:

* ``manifest``: the JSONL manifest schema, per-line validation (``check_manifest``) and loading (torch-free).
* ``stages``: ``Stage`` definitions (trainable parts, losses, data) and loss-weight presets (torch-free).
* ``config``: ``TrainConfig``, every option of a run, validated early (torch-free).
* ``t5_tokenizer``: the T5 tokenizer for semantic targets (tiny built-in one, or flan-t5's files).
* ``sequences``: token sequences of a plan (with per-token loss classes) and of an understanding QA.
* ``features``: the content-hashed on-disk cache of VAE latents, T5 targets and Whisper states.
* ``data``: examples from records + features, deterministic batch order, collation.
* ``module``: ``TrainModule`` (LLM with LoRA, bridge, DiT, resampler) and its losses.
* ``checkpoint``: checkpoints (safetensors + JSON) for ``--resume`` and the final merged model folder.
* ``engine``: the one training loop (accelerate, optimizer, checkpoints, resume, metrics) over a ``TrainingTask``.
* ``stage_task``: the paper's stages as a task: ``train()``, ``dry_run()``.
* ``planner_text``: planner text pretraining as a task; ``vae``: Oobleck VAE pretraining as a task.
"""
