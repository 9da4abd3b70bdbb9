"""Task sources with too few tasks, and an environment where several tasks fail at once: `envfoundry
check` must fail an environment with no tasks, and say how many tasks fail, not just the first."""

from envfoundry import Environment, Message, Score, Task


def _grade(g) -> Score:
    ok = g.final.strip() == str(g.task.data["answer"])
    return Score(1.0 if ok else 0.0, {}, "right" if ok else f"expected {g.task.data['answer']}")


def _say(ep):
    return Message("assistant", str(ep.task.data["answer"]))


def no_tasks():
    """Every split is empty (a data file that was never filled in)."""
    return Environment(name="notasks", tasks=lambda split, seed: [], graders=_grade, reference=_say)


def empty_test_split():
    """Tasks in train only: the split `check` samples by default (test) is empty."""
    def tasks(split, seed):
        if split == "test":
            return []
        return [Task(env="notest", env_version="1", split=split, prompt=f"Say {i}.", data={"answer": i})
                for i in range(5)]

    return Environment(name="notest", tasks=tasks, graders=_grade, reference=_say)


def many_unsolvable():
    """The reference solution is wrong on the odd-numbered tasks (5 of 10)."""
    def tasks(split, seed):
        base = 0 if split == "test" else 100
        return [Task(env="manyunsolvable", env_version="1", split=split, prompt=f"Say {base + i}.",
                     data={"answer": base + i}) for i in range(10)]

    def reference(ep):
        n = ep.task.data["answer"]
        return Message("assistant", str(n if n % 2 == 0 else n + 1))

    return Environment(name="manyunsolvable", tasks=tasks, graders=_grade, reference=reference)
