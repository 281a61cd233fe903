"""The story folder lock: exclusive across processes and threads, re-entrant in one thread, gone with its
process, named in the waiting line and the --no-wait error, and never mistaken for story content."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.errors import FolderBusyError, StoryError, WaitInterrupted
from audiostory_cli.story.folder import StoryFolder
from audiostory_cli.story.lock import LOCK_FILE, read_holder, story_lock, sweep_temp_files
from tests.story_factory import make_story

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and POSIX locks")
runner = CliRunner()


@pytest.fixture
def folder(tmp_path) -> StoryFolder:
    folder = StoryFolder(tmp_path / "chase")
    folder.save(make_story([1.0, 1.2]))
    return folder


def hold_in_child(folder: StoryFolder, command: str = "render") -> int:
    """A forked process that takes the folder's lock and sleeps holding it; returns its pid once it holds it."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            with story_lock(folder.root, command):
                os.write(ready_w, b"x")
                time.sleep(600)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_no_wait_names_the_holder_and_a_killed_holder_leaves_no_stale_lock(folder):
    pid = hold_in_child(folder)
    try:
        assert read_holder(folder.root).pid == pid
        with pytest.raises(FolderBusyError) as caught, story_lock(folder.root, "plan set", wait=False):
            pass
        assert str(caught.value) == (
            f"{folder.root} is busy: the render by pid {pid} is changing it; wait for it to finish, or run again "
            "without --no-wait to wait for it"
        )
        assert caught.value.exit_code == 75
    finally:
        kill(pid)  # kill -9: no clean-up runs in the holder
    with story_lock(folder.root, "plan set", wait=False):
        assert read_holder(folder.root).command == "plan set"
    assert read_holder(folder.root) is None  # a free lock names nobody


def _ctrl_c(*_: object) -> None:
    """Ctrl-C, delivered while ``flock`` blocks. (Sending SIGINT from a SIGALRM handler instead can be left
    pending while the interrupted ``flock`` is retried, and the wait never ends.)"""
    raise KeyboardInterrupt


def test_waiting_says_one_line_and_ctrl_c_stops_waiting(folder):
    pid = hold_in_child(folder)
    lines: list[str] = []
    previous = signal.signal(signal.SIGALRM, _ctrl_c)  # raises in the handler, as Python's own SIGINT handler does
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(WaitInterrupted) as caught, story_lock(folder.root, "plan set", on_wait=lines.append):
            pytest.fail("the lock was taken while another process held it")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        kill(pid)
    assert lines == [
        f"waiting for the render of {folder.root} by pid {pid} to finish… (Ctrl-C stops waiting and changes nothing)"
    ]
    assert str(caught.value) == f"stopped waiting for {folder.root}; nothing was changed"
    assert caught.value.exit_code == 130


def test_a_waiter_proceeds_when_the_holder_ends(folder):
    pid = hold_in_child(folder)
    threading.Timer(0.3, kill, args=(pid,)).start()
    lines: list[str] = []
    with story_lock(folder.root, "export", on_wait=lines.append):
        assert read_holder(folder.root).pid == os.getpid()
    assert len(lines) == 1


def test_reentrant_in_one_thread_exclusive_across_threads(folder):
    order: list[str] = []
    with story_lock(folder.root, "render"):
        with story_lock(folder.root, "export", wait=False):  # nested use by the same command
            order.append("nested")
        other = threading.Thread(target=lambda: _take(folder, order))
        other.start()
        time.sleep(0.2)
        order.append("outer done")
    other.join(10)
    assert order == ["nested", "outer done", "thread"]


def _take(folder: StoryFolder, order: list[str]) -> None:
    with story_lock(folder.root, "plan set"):
        order.append("thread")


def test_killed_writers_temp_files_are_swept_under_the_lock_and_nothing_else(folder):
    events = folder.root / "events"
    events.mkdir()
    stale = [folder.root / ".story.json.ab12cd_9.tmp", events / ".01-rain.s7.wav.zz99xx00.tmp"]
    kept = [folder.root / "notes.tmp", events / ".hidden", folder.root / ".story.json.short.tmp"]
    for path in stale + kept:
        path.write_text("x")
    with story_lock(folder.root, "render"):
        assert [p.exists() for p in stale] == [False, False]
    assert all(p.exists() for p in kept)
    assert sweep_temp_files(folder.root) == []


def test_the_lock_file_is_not_story_content(tmp_path, folder):
    with story_lock(folder.root, "render"):
        pass
    assert (folder.root / LOCK_FILE).is_file()
    result = runner.invoke(app, ["plan", "show", str(folder.root), "--json"])  # read-only: takes no lock
    assert result.exit_code == 0 and LOCK_FILE not in result.output
    empty = StoryFolder(tmp_path / "new")
    with story_lock(empty.root, "tell", create=True):
        empty.prepare_new(force=False)  # a folder holding only its lock file is empty
    assert empty.content() == []


def test_commands_on_something_that_is_not_a_story_leave_no_lock_file(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    (music / "song.wav").write_bytes(b"")
    for args in (["render", str(music)], ["plan", "set", str(music), "1", "--seed", "3"], ["export", str(music)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "has no story.json" in result.stderr, result.output
    result = runner.invoke(app, ["tell", "rain", "-d", "5", "--model", "tiny-random", "--out", str(music)])
    assert result.exit_code == 1 and "not empty and is not a story folder" in result.stderr
    assert sorted(p.name for p in music.iterdir()) == ["song.wav"]
    with pytest.raises(StoryError, match="does not exist"), story_lock(tmp_path / "missing", "render"):
        pass
    assert not (tmp_path / "missing").exists()


def test_a_plan_set_waits_for_a_render_and_then_applies(folder):
    pid = hold_in_child(folder)
    threading.Timer(0.3, kill, args=(pid,)).start()
    result = runner.invoke(app, ["plan", "set", str(folder.root), "2", "--caption", "hail on glass"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith(f"waiting for the render of {folder.root} by pid {pid}")
    assert folder.load().event(2).caption == "hail on glass"


def test_api_read_modify_writes_in_parallel_processes_lose_no_change(tmp_path):
    """Four processes each change their own event's seed 15 times through the Python API at the same time."""
    from audiostory_cli.story.edit import set_event_fields

    folder = StoryFolder(tmp_path / "busy")
    folder.save(make_story([1.0, 1.0, 1.0, 1.0]))
    pids = []
    for index in (1, 2, 3, 4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for round_ in range(15):
                    set_event_fields(folder, index, seed=1000 * index + round_)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0, 0, 0]
    assert [e.seed for e in folder.load().events] == [1014, 2014, 3014, 4014]


def test_an_api_call_waits_for_a_command_holding_the_folder(folder, caplog):
    from audiostory_cli.story.edit import set_event_fields

    pid = hold_in_child(folder)
    threading.Timer(0.3, kill, args=(pid,)).start()
    with caplog.at_level("WARNING"):
        set_event_fields(folder, 1, caption="thunder far away")
    assert folder.load().event(1).caption == "thunder far away"
    assert f"waiting for the render of {folder.root} by pid {pid}" in caplog.text


def test_a_stale_entry_for_a_reused_inode_is_not_taken_for_a_held_lock(folder):
    """A lock file of a deleted folder can leave its inode number to the next folder's: only a lock this thread
    still holds through an open descriptor on that very file counts as nested use (CI saw the other case)."""
    from audiostory_cli.story import lock as lock_module

    with story_lock(folder.root, "render"):
        pass
    info = os.stat(folder.root / lock_module.LOCK_FILE)
    closed = os.open(os.devnull, os.O_RDONLY)
    os.close(closed)
    key = (threading.get_ident(), info.st_dev, info.st_ino)
    lock_module._held[key] = (closed, 1)  # as if an earlier, vanished lock file had had this inode
    pid = hold_in_child(folder)
    try:
        with pytest.raises(FolderBusyError), story_lock(folder.root, "plan set", wait=False):
            pytest.fail("a stale entry was taken for a held lock")
    finally:
        kill(pid)
        lock_module._held.pop(key, None)
