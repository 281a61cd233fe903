"""Model weights: the registry (``models/*.toml``), verified downloads, strict loading and our model folders.

- ``registry``: what a model is made of (hub repos, pinned revisions, files, sizes, sha256, licences).
- ``download``: fetch, resume and verify those files; one-line errors when offline.
- ``checkpoint``: our own model-folder format (safetensors + ``audiostory.json`` sidecar) and strict loading.
- ``official``: map the released ``pytorch_model.bin`` (peft 0.4 LoRA names) onto our modules.
- ``convert``: turn the downloaded sources into one of our model folders, once.

Only ``registry`` and ``download`` are light; the others import torch when their functions run.
"""
