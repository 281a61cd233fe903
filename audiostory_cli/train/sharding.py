"""``--fsdp``: weights, gradients and optimizer state sharded across processes (PyTorch FSDP2, ``fully_shard``).

DDP keeps a whole copy of the trainable module on every process; FSDP keeps 1/N of every parameter, gradient and
AdamW moment, gathers a block's weights just before it runs and frees them after. The units are the reasoner's
decoder layers and the DiT's blocks; the rest (embeddings, norms, projectors, fusion, resampler) is one root unit.

Everything that leaves the run is whole: checkpoints hold the full trainable tensors (and the full optimizer state
keyed by parameter name), so they look like a DDP run's and resume on the same number of processes; the final
model folder is built by rank 0 from a fresh unsharded copy of the base model loaded with the gathered weights.

FSDP2 runs on CUDA (NCCL) and on CPU processes (gloo): the CPU path is what the tests use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ..errors import UsageError

if TYPE_CHECKING:
    from .module import TrainModule


def check_fsdp_world(world_size: int) -> None:
    if world_size < 2:
        raise UsageError(
            "--fsdp shards the model across processes, and this run has one: launch it with `torchrun "
            "--nproc_per_node N -m audiostory_cli train ... --fsdp` or `accelerate launch --num_processes N ...` "
            "(N >= 2), or drop --fsdp"
        )


def shard_units(module: TrainModule) -> list[nn.Module]:
    """The blocks sharded as their own FSDP units: decoder layers of the LLM, double and single DiT blocks."""
    causal_lm = module.causal_lm()
    transformer = module.dit.transformer
    return [*causal_lm.model.layers, *transformer.transformer_blocks, *transformer.single_transformer_blocks]


def shard_module(module: TrainModule, device: torch.device, world_size: int) -> TrainModule:
    """Shard ``module`` in place over one mesh of ``world_size`` processes on ``device``'s type."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for unit in shard_units(module):
        fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def set_gradient_sync(module: nn.Module, sync: bool) -> None:
    """Gradient accumulation: skip the reduce-scatter on all but the last micro-batch of a step."""
    module.set_requires_gradient_sync(sync)  # type: ignore[operator]


def _options(*, trainable_only: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)


def gather_trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor, whole, by parameter name, on rank 0 (an empty dict elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    # full_state_dict=True: every value is a whole tensor
    state = cast(dict[str, torch.Tensor], get_model_state_dict(module, options=_options(trainable_only=True)))
    names = {name for name, p in module.named_parameters() if p.requires_grad}
    return {name: tensor for name, tensor in state.items() if name in names}


def gather_model(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's whole state dict on rank 0 (empty elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return cast(dict[str, torch.Tensor], dict(get_model_state_dict(module, options=_options(trainable_only=False))))


def gather_optimizer(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state, whole and keyed by parameter name, on rank 0 (empty elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return dict(get_optimizer_state_dict(module, optimizer, options=_options(trainable_only=True)))


def load_optimizer(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Shard a whole, name-keyed optimizer state (``gather_optimizer``'s) into this process's optimizer."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, optim_state_dict=state, options=_options(trainable_only=True))
