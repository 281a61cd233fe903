"""`audiostory edit STORY_DIR INSTRUCTION`: the model rewrites the plan, you review the change, only it renders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import err_console, is_interactive, out_console, report_error
from .options import (
    DeviceOpt,
    JsonOpt,
    NoWaitOpt,
    OffloadOpt,
    RecueOpt,
    StemsOpt,
    lock_story,
    refresh_export_options,
)

PROPOSAL_FILE = "edit.proposal.toml"

if TYPE_CHECKING:
    from ..app.editing import EditProposal
    from ..story import StoryFolder


def edit(
    story_dir: Annotated[Path, typer.Argument(help="The story folder (holds story.json).")],
    instruction: Annotated[
        str | None, typer.Argument(help='What to change, e.g. "make the door heavier, add a siren after the skid".')
    ] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Restore the plan and audio before the last edit.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (always so without a TTY).")] = False,
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Apply the new plan and stop; render later.")] = False,
    stems: StemsOpt = False,
    cues: RecueOpt = None,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Edit a rendered story by instruction; events the edit does not touch keep their audio, byte for byte."""
    from ..app.editing import apply_edit, check_editable, check_instruction, propose_edit
    from ..errors import UsageError
    from ..story import StoryFolder
    from ..story.diff import summary

    folder = StoryFolder(story_dir)
    if undo:
        if instruction is not None:
            raise UsageError("give either an INSTRUCTION or --undo, not both")
        with lock_story(folder, "edit --undo", no_wait=no_wait):
            _undo(folder, stems=stems, cues=cues)
        return
    if instruction is None:
        raise UsageError(f'say what to change, e.g. audiostory edit {story_dir} "add a siren after the skid"')
    text = check_instruction(instruction)  # every cheap check before the model loads
    with lock_story(folder, "edit", no_wait=no_wait):  # the plan read, rewritten and applied as one change
        story = folder.load()
        check_editable(folder, story)
        err_console.print(f"[dim]audiostory edit: {story_dir}[/]")

        from .progress_view import RichProgress
        from .session import load_for_command, render_and_export, wants_offload

        loaded, runtime = load_for_command(story.model, device)
        with RichProgress() as progress:
            proposal = propose_edit(folder, text, loaded, progress=progress)
        if proposal.attempts > 1:
            err_console.print("the first rewrite did not parse; the second did")
        reviewed = _review(folder, proposal, ask=is_interactive() and not yes)
        if reviewed is None:
            err_console.print("not applied; the story is unchanged")
            return
        proposal = reviewed
        if not proposal.changed:
            err_console.print(summary(proposal.changes))
            err_console.print("no changes; the story is unchanged")
            return
        story = apply_edit(folder, proposal)
        err_console.print(f"applied: {summary(proposal.changes)}")
        if plan_only:
            err_console.print(f"plan saved; render it with: audiostory render {folder.root}")
            out_console.print(str(folder.story_path))
            return
        export_options = refresh_export_options(folder, story.preset, stems=stems, cues=cues)
        try:
            render_and_export(
                folder,
                loaded,
                runtime,
                export_options=export_options,
                offload=wants_offload(offload, runtime),
                as_json=as_json,
            )
        except KeyboardInterrupt:
            report_error(
                f"interrupted; the edit is applied and finished events are kept: run `audiostory render "
                f"{folder.root}` to finish (or `audiostory edit {folder.root} --undo`)"
            )
            raise typer.Exit(130) from None


def _review(folder: StoryFolder, proposal: EditProposal, *, ask: bool) -> EditProposal | None:
    """Show the change; in a terminal ask ``[a]pply / [e]dit / [q]uit`` (edit opens the new plan in $EDITOR)."""
    from ..story.diff import diff_table, summary
    from .tables import print_table

    while True:
        print_table(err_console, diff_table(proposal.changes, title=f"edit: {proposal.instruction[:70]}"))
        err_console.print(summary(proposal.changes))
        if not ask or not proposal.changed:
            return proposal
        choice = typer.prompt("[a]pply / [e]dit / [q]uit", default="a", err=True).strip().lower()[:1]
        if choice == "a":
            return proposal
        if choice == "q":
            return None
        if choice == "e":
            proposal = _hand_edit(folder, proposal)
            continue
        err_console.print("please answer a, e or q")


def _hand_edit(folder: StoryFolder, proposal: EditProposal) -> EditProposal:
    """Open the proposed plan in the editor; a plan that does not validate can be re-opened or dropped."""
    from ..app.editing import revise_proposal
    from ..errors import PlanValidationError
    from ..fsutil import write_text_atomic
    from ..story.edit import _run_editor, find_editor
    from ..story.editview import parse_view, render_view
    from .session import ask_retry

    command = find_editor()
    path = folder.root / PROPOSAL_FILE  # not plan.edit.toml: `plan edit` would reopen it on the current plan
    write_text_atomic(path, render_view(proposal.after))
    while True:
        _run_editor(command, path)
        try:
            after = parse_view(path.read_text(encoding="utf-8"), proposal.after)
        except PlanValidationError as exc:
            if ask_retry(str(exc)):
                continue
            err_console.print("kept the model's plan")
            path.unlink(missing_ok=True)
            return proposal
        path.unlink(missing_ok=True)
        return revise_proposal(proposal, after)


def _undo(folder: StoryFolder, *, stems: bool, cues: str | None) -> None:
    """Restore the plan before the last edit; re-deliver the mix when every event has its audio (no rendering)."""
    from ..app.editing import undo_edit
    from ..app.export import export_story
    from .progress_view import RichProgress

    result = undo_edit(folder)
    err_console.print(f"undid: {result.instruction}")
    if result.kept:
        err_console.print(f"kept in events/ (no longer in the plan): {', '.join(result.kept)}")
    stale = [e.index for e in result.story.events if result.story.is_stale(e)]
    if stale:
        listed = ", ".join(map(str, stale))
        err_console.print(f"events {listed} have no audio yet; run: audiostory render {folder.root}")
        out_console.print(str(folder.story_path))
        return
    options = refresh_export_options(folder, result.story.preset, stems=stems, cues=cues)
    with RichProgress() as progress:
        delivered = export_story(folder, options, progress)
    for path in [folder.story_path, delivered.mix, *delivered.stems, *delivered.cues, delivered.qc_path]:
        out_console.print(str(path), soft_wrap=True)
