"""The planner's rewrite of a plan (for `edit`): constrained, durations as written, LoRA adapter switchable."""

from __future__ import annotations

import torch

from audiostory_cli.config import tiny_dims
from audiostory_cli.planner.api import _adapter_disabled, build_tiny_planner
from audiostory_cli.planner.editing import build_edit_instruction, demo_edit
from audiostory_cli.planner.layout import PlannedEvent
from audiostory_cli.planner.reasoner import SamplingOptions, apply_lora
from audiostory_cli.planner.script import scripted_plan


def test_rewrite_keeps_the_written_durations():
    planner = build_tiny_planner()
    events = [PlannedEvent("rain on a roof", "rain", 2.0), PlannedEvent("a dog barks", "dog", 1.5)]
    edited = demo_edit(events, "add a siren after the dog")
    script = scripted_plan(planner.reasoner, "A storm.", edited)
    text = build_edit_instruction("a storm", 3.5, events, [], "add a siren after the dog")
    parsed = planner.rewrite(
        text,
        sampling=SamplingOptions(max_new_tokens=script.num_tokens + 8),
        processors=(script.processor(),),
        adapter=False,
    )
    assert [(e.caption, e.duration) for e in parsed.events] == [
        ("rain on a roof", 2.0),
        ("a dog barks", 1.5),
        ("siren", 1.5),
    ]  # 5.0 s: no rescaling to 3.5
    assert parsed.warnings == []


def test_adapter_off_is_the_base_model():
    planner = build_tiny_planner()
    ids = torch.tensor([[5, 6, 7, 8]])
    decoder = planner.reasoner.decoder
    with torch.inference_mode():
        base = decoder(input_ids=ids).last_hidden_state
    peft = apply_lora(planner.reasoner.llm, tiny_dims().reasoner)
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            param.data.normal_(std=0.5)
    with torch.inference_mode():
        on = decoder(input_ids=ids).last_hidden_state
        with _adapter_disabled(peft, True):
            off = decoder(input_ids=ids).last_hidden_state
        with _adapter_disabled(peft, False):
            kept = decoder(input_ids=ids).last_hidden_state
    assert torch.allclose(off, base) and not torch.allclose(on, base)
    assert torch.equal(kept, on)
