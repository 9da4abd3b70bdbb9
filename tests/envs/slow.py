"""Test environments: a slow one (for kill/resume/interrupt tests) and buggy ones."""

import time

from envfoundry import Environment, Message, Score, Task, ToolCall, tool


def _tasks(n: int, name: str):
    def tasks(split: str, seed: int):
        return [
            Task(env=name, env_version="1", split=split, prompt=f"say {i}", data={"i": i})
            for i in range(n)
        ]
    return tasks


def _slow_grade(g) -> Score:
    time.sleep(0.004)
    ok = g.final == f"{g.task.data['i']}"
    return Score(1.0 if ok else 0.0, {}, "ok" if ok else "wrong")


def make_slow() -> Environment:
    return Environment(
        name="slow", tasks=_tasks(100, "slow"), graders=_slow_grade,
        reference=lambda ep: Message("assistant", str(ep.task.data["i"])), max_turns=1,
    )


@tool
def explode(ep, n: int) -> str:
    """A tool with a bug."""
    return str(1 // (n - n))


def make_buggy_tool() -> Environment:
    return Environment(
        name="buggy_tool", tasks=_tasks(5, "buggy_tool"), tools=[explode],
        graders=lambda g: Score(1.0),
        reference=lambda ep: Message("assistant", tool_calls=[ToolCall("explode", {"n": 1})]),
    )


def _crash_grade(g) -> Score:
    raise RuntimeError("grader bug")


def make_buggy_grader() -> Environment:
    return Environment(
        name="buggy_grader", tasks=_tasks(5, "buggy_grader"), graders=_crash_grade,
        reference=lambda ep: Message("assistant", "x"),
    )


def make_buggy_reset() -> Environment:
    def world(task):
        raise ValueError("world factory bug")
    return Environment(
        name="buggy_reset", tasks=_tasks(5, "buggy_reset"), world=world,
        graders=lambda g: Score(1.0), reference=lambda ep: Message("assistant", "x"),
    )


not_an_env = 42


def make_dies(marker: str) -> Environment:
    """Like ``slow``, but a process grading task 7 dies (``os._exit``) while ``marker`` exists:
    a worker process lost in the middle of a run."""
    import os
    from pathlib import Path

    def grade(g) -> Score:
        if g.task.data["i"] == 7 and Path(marker).exists():
            os._exit(3)
        return _slow_grade(g)

    return Environment(
        name="dies", tasks=_tasks(40, "dies"), graders=grade,
        reference=lambda ep: Message("assistant", str(ep.task.data["i"])), max_turns=1,
    )


def make_lockdie() -> Environment:
    """A worker process killed while it holds the shared job counter's lock (it takes the lock
    itself, then SIGKILLs itself): the run must end with an error, not hang."""
    import gc
    import multiprocessing
    import os
    import signal
    from multiprocessing.sharedctypes import Synchronized

    def grade(g) -> Score:
        if g.task.data["i"] == 7 and multiprocessing.parent_process() is not None:
            gc.unfreeze()
            counter = next(o for o in gc.get_objects() if isinstance(o, Synchronized))
            counter.get_lock().acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        return _slow_grade(g)

    return Environment(
        name="lockdie", tasks=_tasks(40, "lockdie"), graders=grade,
        reference=lambda ep: Message("assistant", str(ep.task.data["i"])), max_turns=1,
    )


class Blob:
    """A class of this file inside task data: workers must import the file under the same name."""

    def __init__(self, v: int) -> None:
        self.v = v


def make_blob() -> Environment:
    def tasks(split: str, seed: int):
        return [Task(env="blob", env_version="1", split=split, prompt=f"say {i}", data={"i": i, "blob": Blob(i)})
                for i in range(10)]

    return Environment(
        name="blob", tasks=tasks, graders=lambda g: Score(float(g.task.data["blob"].v == g.task.data["i"])),
        reference=lambda ep: Message("assistant", str(ep.task.data["i"])), max_turns=1,
    )


def make_unpicklable() -> Environment:
    import threading

    def tasks(split: str, seed: int):
        return [Task(env="lk", env_version="1", split=split, prompt=f"say {i}", data={"i": i, "lock": threading.Lock()})
                for i in range(4)]

    return Environment(
        name="lk", tasks=tasks, graders=lambda g: Score(1.0),
        reference=lambda ep: Message("assistant", str(ep.task.data["i"])), max_turns=1,
    )
