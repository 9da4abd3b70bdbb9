"""Training adapters (TRL GRPO) and trainer exports.

Training tests use a tiny Llama (2 layers, hidden 64) with SmolLM2's tokenizer read from the GGUF,
so a few GRPO steps take seconds on a CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envfoundry import Environment, Message, Score, Task, World, evaluate, tool
from envfoundry.train.model import missing_train_modules
from envfoundry.train.trl_adapter import EnvAdapter, _text

ROOT = Path(__file__).resolve().parent.parent
TRAIN_INSTALL = 'pip install -e ".[train]"'

# CI installs the train extra and the model: there, a missing part must fail, never skip.
_IN_CI = bool(os.environ.get("CI"))
_MISSING = missing_train_modules()


def _gguf_missing() -> str | None:
    from envfoundry.core.errors import UsageError
    from envfoundry.policies.local import find_default_gguf

    try:
        find_default_gguf()
    except UsageError as e:
        return str(e)
    return None


needs_train = pytest.mark.skipif(
    bool(_MISSING) and not _IN_CI,
    reason=f"the train extra is not installed ({', '.join(_MISSING)} missing); install with: {TRAIN_INSTALL}",
)
needs_smollm2 = pytest.mark.skipif(
    _gguf_missing() is not None and not _IN_CI, reason=f"SmolLM2 GGUF not installed: {_gguf_missing()}"
)


# ------------------------------------------------------------------ environments
def probe_env() -> Environment:
    """Single-turn; the score is the reply's length / 40; the grader raises on every 4th task."""

    def tasks(split: str, seed: int) -> list[Task]:
        return [Task(env="probe", env_version="1", split=split, prompt=f"Say something ({split} {i}).",
                     data={"boom": i % 4 == 0}) for i in range(16)]

    def grade(g) -> Score:
        if g.task.data["boom"]:
            raise ValueError("grader bug")
        return Score(min(1.0, len(g.final) / 40), {"length": len(g.final)})

    return Environment(name="probe", tasks=tasks, graders=grade, max_turns=1)


@tool(writes=True)
def add(ep, amount: int) -> str:
    """Add `amount` to the counter."""
    value = ep.world.get("counter", "c")["value"] + amount
    ep.world.update("counter", "c", value=value)
    return f"the counter shows {value}"


@tool
def submit(ep) -> str:
    """Say you are done."""
    ep.finish()
    return "submitted"


@tool
def crash(ep) -> str:
    """A tool with a bug."""
    raise RuntimeError("environment bug")


def counter_env() -> Environment:
    """Multi-turn with tools; the grade's breakdown shows the initial world's hash."""

    def tasks(split: str, seed: int) -> list[Task]:
        specs = [(1, 3, ""), (5, 10, ""), (0, 2, " CRASH")]
        return [Task(env="counter", env_version="1", split=split, world={"start": s},
                     prompt=f"Make the counter show {t}, then submit.{extra}", data={"target": t})
                for s, t, extra in specs]

    def grade(g) -> Score:
        value = g.world_after.get("counter", "c")["value"]
        ok = value == g.task.data["target"]
        return Score(1.0 if ok else 0.0, {"value": value, "world_before": g.world_before.hash()})

    return Environment(
        name="counter", tasks=tasks, tools=[add, submit, crash], graders=grade, max_turns=4,
        world=lambda task: World({"counter": {"c": {"value": task.world["start"]}}}),
    )


# ------------------------------------------------------------ rewards (no torch)
def test_rewards_are_the_graders_scores_on_known_answers() -> None:
    from envfoundry.envs.math import make_env

    env = make_env(levels=[1])
    task = env.tasks("train")[0]
    gold = task.data["answer"]
    ad = EnvAdapter(env, [task], group_size=2)
    texts = [f"<answer>{gold}</answer>", f"<answer>{gold + 1}</answer>", f"it is {gold}",
             f"{gold} <answer>{gold}</answer>"]
    metrics: list[tuple[str, float]] = []
    rewards = ad.score_batch([[{"role": "assistant", "content": t}] for t in texts], task_id=[task.id] * 4,
                             log_metric=lambda k, v: metrics.append((k, v)))
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    for text, r in zip(texts, rewards, strict=True):  # the same as grading an episode directly
        ep = env.reset(task, seed=1)
        ep.step(Message("assistant", text))
        assert env.grade(ep).value == r
    got = dict(metrics)
    assert got["envfoundry/masked"] == 0 and got["envfoundry/breakdown/correct"] == 0.5
    assert got["envfoundry/breakdown/format"] == 0.75
    assert ad.totals["completed"] == 4


def test_grader_and_env_errors_are_masked_not_zero() -> None:
    env = probe_env()
    tasks = list(env.tasks("train"))
    ad = EnvAdapter(env, tasks, group_size=2)
    batches: list[dict] = []
    ad.on_batch = batches.append
    ids = [tasks[0].id, tasks[0].id, tasks[1].id, tasks[1].id]  # task 0 is a grader bug
    rewards = ad.score_batch(["x" * 20, "x" * 8, "x" * 40, "x" * 4], task_id=ids)
    assert rewards == [None, None, 1.0, 0.1]
    assert ad.totals["grader_error"] == 2 and ad.totals["completed"] == 2
    b = batches[0]
    assert (b["masked"], b["grader_error"], b["scored"]) == (2, 2, 2)
    assert b["reward_mean"] == pytest.approx(0.55)  # the masked ones are not zeros in the mean
    # an exception in environment code while playing the action: env_error, masked
    env.reset = lambda task, seed: (_ for _ in ()).throw(RuntimeError("world factory bug"))  # type: ignore
    assert ad.grade_text(tasks[1].id, "hi", 0).outcome == "env_error"
    assert ad.grade_text(tasks[1].id, "hi", 0).reward is None


@needs_train
@needs_smollm2
def test_multi_turn_rollout_masks_environment_tokens_and_shares_the_world() -> None:
    tok = _tokenizer()
    env = counter_env()
    tasks = list(env.tasks("train"))
    ad = EnvAdapter(env, tasks, group_size=2)
    eos = tok.eos_token_id
    call = tok('<tool_call>{"name": "add", "arguments": {"amount": 2}}</tool_call>',
               add_special_tokens=False)["input_ids"] + [eos]
    done = tok('<tool_call>{"name": "submit", "arguments": {}}</tool_call>',
               add_special_tokens=False)["input_ids"] + [eos]
    bug = tok('<tool_call>{"name": "crash", "arguments": {}}</tool_call>', add_special_tokens=False)["input_ids"]
    turns = {"n": 0}

    def generate(contexts: list[list[int]], max_new: int) -> list[list[int]]:
        turns["n"] += 1
        out = []
        for c in contexts:
            if "CRASH" in tok.decode(c):
                out.append(bug + [eos])
            else:
                out.append(call if turns["n"] == 1 else done)
        return out

    order = [t.id for t in tasks for _ in range(2)]
    res = ad.play(order, tok, generate, step=0, max_tokens=512)
    assert res["env_reward"] == [1.0, 1.0, 0.0, 0.0, None, None]
    assert res["env_outcome"] == ["completed"] * 4 + ["env_error"] * 2
    for i in range(4):
        comp, mask = res["completion_ids"][i], res["env_mask"][i]
        assert len(comp) == len(mask) == len(res["logprobs"][i])
        assert comp[: len(call)] == call and mask[: len(call)] == [1] * len(call)
        assert comp[-len(done):] == done and mask[-len(done):] == [1] * len(done)
        env_part = tok.decode([t for t, m in zip(comp, mask, strict=True) if m == 0])
        assert "<tool_result" in env_part and "the counter shows" in env_part and "<|im_start|>assistant" in env_part
        assert sum(mask) == len(call) + len(done)  # only the model's tokens are trained on
    assert all(m == 0 for i in (4, 5) for m in res["env_mask"][i])  # errors: no tokens in the loss
    worlds = [b.get("world_before") for b in res["env_breakdown"][:4]]
    assert worlds[0] == worlds[1] and worlds[2] == worlds[3] and worlds[0] != worlds[2]
    assert ad.episode_seed(order[0], 0, 0) != ad.episode_seed(order[2], 0, 1)
    # a tight budget truncates the episode, which is still graded
    cut = ad.play(order[:2], tok, lambda c, n: [call[:n] for _ in c], step=0, max_tokens=len(call) - 3)
    assert cut["env_outcome"] == ["truncated", "truncated"] and cut["env_reward"] == [0.0, 0.0]


# ----------------------------------------------------------- training (tiny model)
_TOK = None


def _tokenizer():
    global _TOK
    if _TOK is None:
        from envfoundry.train.model import load_tokenizer

        _TOK = load_tokenizer(None)
    return _TOK


def _tiny_model(tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


@needs_train
@needs_smollm2
def test_training_rewards_come_from_the_graders_and_errors_are_masked(tmp_path: Path, monkeypatch) -> None:
    from envfoundry.train.run import TrainConfig, train

    env = probe_env()
    seen: list[tuple[int, list[str], list[str], list[float | None]]] = []
    original = EnvAdapter.score_batch

    def spy(self, completions, **kw):
        out = original(self, completions, **kw)
        seen.append((kw["trainer_state"].global_step, list(kw["task_id"]), [_text(c) for c in completions], out))
        return out

    monkeypatch.setattr(EnvAdapter, "score_batch", spy)
    tok = _tokenizer()
    cfg = TrainConfig(env="probe", steps=2, group_size=2, batch=4, max_completion_tokens=12, eval_tasks=4,
                      eval_batch=4, save_model=False, seed=3)
    res = train(cfg, tmp_path / "out", env=env, model=_tiny_model(tok), tokenizer=tok)

    by_id = {t.id: t for t in env.tasks("train")}
    assert len(seen) == 2 and len(res.log) == 2
    for (step, ids, texts, rewards), row in zip(seen, res.log, strict=True):
        assert row["step"] == step + 1
        for tid, text, r in zip(ids, texts, rewards, strict=True):
            if by_id[tid].data["boom"]:
                assert r is None  # masked, never 0
            else:
                ep = env.reset(by_id[tid], seed=0)
                ep.step(Message("assistant", text))
                assert r == env.grade(ep).value
        scored = [r for r in rewards if r is not None]
        assert row["envfoundry/grader_error"] == row["envfoundry/masked"] == len(rewards) - len(scored)
        if scored:  # TRL's logged reward is the mean over scored completions only
            assert row["reward"] == pytest.approx(sum(scored) / len(scored), abs=1e-5)
    masked = sum(r is None for _, _, _, rs in seen for r in rs)
    assert res.totals["grader_error"] == masked and res.totals["scored"] == 8 - masked
    out = tmp_path / "out"
    for name in ("report.md", "results.json", "reward_curve.png", "train_log.jsonl", "train_config.json"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "| before |" in report and "| after |" in report and "95% CI" in report
    assert res.before["outcomes"]["grader_error"] == 1  # held-out task 0 is a grader bug: an error, not a 0
    assert res.before["n_scored"] == 3
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]


@needs_train
@needs_smollm2
def test_multi_turn_training_step_with_rollout_func(tmp_path: Path) -> None:
    from envfoundry.train.run import TrainConfig, train

    tok = _tokenizer()
    cfg = TrainConfig(env="counter", steps=1, group_size=2, batch=4, max_completion_tokens=24,
                      max_turn_tokens=8, eval_tasks=0, save_model=True)
    res = train(cfg, tmp_path / "out", env=counter_env(), model=_tiny_model(tok), tokenizer=tok)
    assert len(res.log) == 1 and res.log[0]["reward"] == res.log[0]["reward"]  # not NaN
    assert (tmp_path / "out" / "model" / "config.json").is_file()


@needs_train
@needs_smollm2
def test_lora_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from envfoundry.core.errors import UsageError
    from envfoundry.train.run import TrainConfig, train

    tok = _tokenizer()
    out = tmp_path / "out"
    cfg = TrainConfig(env="probe", steps=1, group_size=2, batch=4, max_completion_tokens=8, eval_tasks=0,
                      save_every=1, lora=True, save_model=True)
    first = train(cfg, out, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)
    assert [r["step"] for r in first.log] == [1] and (out / "checkpoints" / "checkpoint-1").is_dir()
    with pytest.raises(UsageError, match="not empty"):
        train(cfg, out, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)
    with pytest.raises(UsageError, match=r"--lr 0.5 differs from the stored \(0.0001\)"):
        train(cfg.model_copy(update={"lr": 0.5}), out, resume=True, env=probe_env(), model=_tiny_model(tok),
              tokenizer=tok)
    ids = (out / "train_tasks.txt").read_text()
    (out / "train_tasks.txt").write_text("some-other-task\n")  # as if the calibration had been redone
    with pytest.raises(UsageError, match="training tasks differ"):
        train(cfg, out, resume=True, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)
    (out / "train_tasks.txt").write_text(ids)
    more = train(cfg.model_copy(update={"steps": 2}), out, resume=True, env=probe_env(), model=_tiny_model(tok),
                 tokenizer=tok)
    assert [r["step"] for r in more.log] == [1, 2]
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    assert more.totals["scored"] + more.totals["grader_error"] == 8
    assert (out / "model" / "config.json").is_file()  # LoRA merged into a plain model
    with pytest.raises(UsageError, match="--steps 1 is fewer than the 2 steps already trained"):
        train(cfg, out, resume=True, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)


@needs_train
@needs_smollm2
def test_a_training_that_failed_after_its_folder_was_made_resumes(tmp_path: Path, monkeypatch) -> None:
    import envfoundry.train.run as run_mod
    from envfoundry.train.run import TrainConfig, train

    tok = _tokenizer()
    out = tmp_path / "out"
    cfg = TrainConfig(env="probe", steps=1, group_size=2, batch=4, max_completion_tokens=8, eval_tasks=2,
                      eval_batch=2, save_model=False)
    real = run_mod._make_trainer

    def broken(*a, **kw):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(run_mod, "_make_trainer", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(cfg, out, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)
    assert json.loads((out / "train_config.json").read_text()) == json.loads(cfg.model_dump_json())
    assert (out / "eval_before" / "summary.json").is_file()
    monkeypatch.setattr(run_mod, "_make_trainer", real)
    with open(out / "train_log.jsonl", "a") as f:  # as if killed after step 1 was logged, before its checkpoint
        f.write('{"step": 1, "reward": 0.5, "completions": 4}\n{"step": 2, "rew')
    res = train(cfg, out, resume=True, env=probe_env(), model=_tiny_model(tok), tokenizer=tok)
    assert [r["step"] for r in res.log] == [1] and res.before is not None and res.after is not None


@needs_train
@needs_smollm2
def test_embedded_smollm2_loads_as_a_plain_trainable_model() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from envfoundry.train.model import load_model, resolve_model_source

    model, tok = load_model(None, device="cpu")
    assert getattr(model.config, "quantization_config", None) is None
    assert all(p.requires_grad for p in model.parameters())
    directory, gguf = resolve_model_source("smollm2")
    ref = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32)
    ids = tok("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)


def test_train_cli_rejects_a_batch_that_splits_groups(run_cli) -> None:
    r = run_cli("train", "math", "--batch", "6", "--group-size", "4", "--out", "/nonexistent/x")
    assert r.returncode == 2, r.stderr
    if _MISSING and not _IN_CI:
        assert 'pip install "envfoundry[train]"' in r.stderr  # says how to get the extra
    else:
        assert "multiple of --samples" in r.stderr


# -------------------------------------------------------------------- exports
def _runs(tmp_path: Path) -> tuple[Path, Path]:
    tools_run = tmp_path / "counter"
    evaluate(f"{ROOT / 'examples' / 'counter_env.py'}:make_env", model="scripted:oracle", out=tools_run, limit=3,
             samples=2)
    flaky_run = tmp_path / "probe"
    evaluate(probe_env(), model="scripted:noop", out=flaky_run, split="test", limit=8)
    return tools_run, flaky_run


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_trainer_exports_load_with_datasets(tmp_path: Path, suffix: str) -> None:
    datasets = pytest.importorskip("datasets")
    from envfoundry.rollout.export import export_run
    from envfoundry.rollout.store import RunStore

    tools_run, flaky_run = _runs(tmp_path)
    builder = "parquet" if suffix == ".parquet" else "json"

    def load(run: Path, fmt: str):
        out = tmp_path / f"{run.name}-{fmt}{suffix}"
        n = export_run(run, fmt, out)
        ds = datasets.load_dataset(builder, data_files=str(out), split="train")
        assert ds.num_rows == n
        return ds

    recs = list(RunStore.open(tools_run).records())
    trl = load(tools_run, "trl")
    assert trl.num_rows == 6 and {"prompt", "completion", "label", "reward"} <= set(trl.column_names)
    row = trl[0]
    assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    assert row["completion"][0]["tool_calls"][0]["function"]["name"] in ("add", "submit")
    assert any(m["role"] == "tool" for m in row["completion"])
    assert sorted(trl["reward"]) == sorted(r["score"] for r in recs) and all(trl["label"])
    hf = load(tools_run, "hf")
    assert len(hf[0]["messages"]) == len(row["prompt"]) + len(row["completion"])
    verl = load(tools_run, "verl")
    assert set(verl.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    v = verl[0]
    assert v["data_source"] == "envfoundry/counter" and v["ability"] == "counter"
    assert v["reward_model"]["ground_truth"] == v["extra_info"]["task_id"]
    assert v["extra_info"]["reward"] == 1.0 and set(v["prompt"][0]) == {"role", "content"}
    # errored rollouts are left out, not written with reward 0
    flaky = list(RunStore.open(flaky_run).records())
    errors = sum(r["outcome"] == "grader_error" for r in flaky)
    assert errors == 2
    for fmt in ("trl", "hf", "verl"):
        ds = load(flaky_run, fmt)
        assert ds.num_rows == len(flaky) - errors
    assert load(flaky_run, "trl")[0]["completion"] == [
        {"role": "assistant", "content": "", "tool_calls": None, "tool_call_id": None, "name": None}
    ]


# ------------------------------------------------ refusals before anything is written (no model)
@needs_train
@pytest.mark.parametrize(("args", "message"), [
    (["--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["--device", "UNAVAILABLE"], "is not available on this machine"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--seed", "99999999999999999999999"], "--seed must be <= 2^32-1 (numpy's seed range)"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--model", "missing.gguf"], "model file 'missing.gguf' does not exist"),
    (["--levels", "99"], "unknown level"),
])
def test_train_cli_refuses_bad_options_before_writing_anything(run_cli, tmp_path: Path, args: list[str],
                                                               message: str) -> None:
    import torch

    if "UNAVAILABLE" in args:  # a device this machine lacks
        args = ["--device", "mps" if torch.cuda.is_available() else "cuda"]
    r = run_cli("train", "math", *args, "--no-calibration", "--out", "trx", "-q", "--steps", "1",
                "--eval-tasks", "1", cwd=tmp_path, timeout=120)  # a regression would train for real
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    if args[0] == "--device":
        assert "available" in r.stderr and "cpu" in r.stderr  # names what this machine has
    assert list(tmp_path.iterdir()) == []


@needs_train
def test_train_cli_refuses_to_resume_what_is_not_a_training(run_cli, tmp_path: Path) -> None:
    r = run_cli("train", "math", "--out", "nonexist", "--resume", "-q", cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "'nonexist' does not exist, so there is no training to resume; drop --resume" in r.stderr
    assert not (tmp_path / "nonexist").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    r = run_cli("train", "math", "--out", "other", "--resume", "-q", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "holds no training to resume (no train_config.json)" in r.stderr, r.stderr
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]
    r = run_cli("train", "math", "--out", "other", "-q", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "is not empty; choose another --out" in r.stderr, r.stderr


@needs_train
def test_train_cli_resume_names_the_options_that_differ(run_cli, tmp_path: Path) -> None:
    from envfoundry.train.run import TrainConfig

    out = tmp_path / "out"
    out.mkdir()
    missing = str(tmp_path / "gone.gguf")  # the model file went away: the check after the options' comparison
    stored = TrainConfig(env="math", seed=3, lr=0.5, lora=True, eval_tasks=1, model=missing,
                         env_args={"levels": "1"}).model_dump_json(indent=2)
    (out / "train_config.json").write_text(stored)
    # no options: the stored ones are used, so the resume gets as far as the model
    for args in ([], ["--seed", "3", "--lora", "--levels", "1", "--steps", "40"]):
        r = run_cli("train", "--out", "out", "--resume", "-q", *args, cwd=tmp_path, timeout=120)
        err = " ".join(r.stderr.split())
        assert r.returncode == 2 and "gone.gguf" in err and "other options" not in err, err
    r = run_cli("train", "math", "--out", "out", "--resume", "-q", "--eval-tasks", "1", "--steps", "5",
                "--device", "cpu", "--seed", "0", "--full", "--lr", "0.25", "--model", missing, cwd=tmp_path,
                timeout=120)
    assert r.returncode == 2, r.stderr
    err = " ".join(r.stderr.split())
    assert "'out' was started with other options:" in err
    assert "--lr 0.25 differs from the stored (0.5)" in err and "--seed 0 differs from the stored (3)" in err
    assert "--full differs from the stored (--lora)" in err
    diffs = err.split("other options:")[1].split("; resume")[0]
    assert "--steps" not in diffs and "--device" not in diffs and "Traceback" not in err  # these may change
    assert (out / "train_config.json").read_text() == stored and [p.name for p in out.iterdir()] == [
        "train_config.json"]
    (out / "train_config.json").write_text(stored[:40])  # torn
    r = run_cli("train", "math", "--out", "out", "--resume", "-q", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "train_config.json" in r.stderr and "(damaged?)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_torn_log_line_and_an_unfinished_checkpoint_are_skipped_on_resume(tmp_path: Path) -> None:
    from envfoundry.train.run import _last_checkpoint, _read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.25}\n{"step": 3, "rew')
    assert [r["step"] for r in _read_log(log, None)] == [1, 2]
    assert [r["step"] for r in _read_log(log, 1)] == [1]
    ckpt = tmp_path / "checkpoints"
    for step in (10, 20):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
    (ckpt / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    (ckpt / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # killed while saving
    assert _last_checkpoint(ckpt) == 10
    assert _last_checkpoint(tmp_path / "none") is None


def test_resume_may_change_steps_and_device_but_nothing_else() -> None:
    from envfoundry.train.run import TrainConfig, _comparable, _differences

    cfg = TrainConfig(env="math", device="cuda")
    assert _comparable(cfg) == _comparable(cfg.model_copy(update={"steps": 90, "device": "cpu"}))
    other = cfg.model_copy(update={"env_args": {"levels": "1"}, "calibration": "cal", "max_turn_tokens": 64})
    assert _differences(cfg, other) == [
        "--env-arg/--levels {'levels': '1'} differs from the stored ({})",
        "--max-tokens 64 differs from the stored (default)",
        f"--calibration {Path('cal').resolve()} differs from the stored (none)",
    ]


def test_resume_accepts_a_calibration_path_stored_relative(tmp_path, monkeypatch) -> None:
    from envfoundry.train.run import TrainConfig, _comparable

    monkeypatch.chdir(tmp_path)
    rel = TrainConfig(env="math", calibration="quality/math/calibration")
    absolute = rel.model_copy(update={"calibration": str(tmp_path / "quality/math/calibration"), "steps": 60})
    assert _comparable(rel) == _comparable(absolute)
    assert _comparable(rel) != _comparable(rel.model_copy(update={"calibration": None}))


def test_resume_compares_what_the_options_mean(tmp_path: Path, monkeypatch) -> None:
    """A relative and an absolute path to the same environment file are the same environment, and
    no --lr is the same as --lr at its default."""
    from envfoundry.train.run import TrainConfig, _comparable

    (tmp_path / "e.py").write_text("")
    monkeypatch.chdir(tmp_path)
    rel, absolute = TrainConfig(env="e.py:f"), TrainConfig(env=f"{tmp_path / 'e.py'}:f")
    assert _comparable(rel) == _comparable(absolute)
    assert _comparable(TrainConfig(env="math", lora=True)) == _comparable(TrainConfig(env="math", lora=True, lr=1e-4))
    assert _comparable(TrainConfig(env="math", lora=True)) != _comparable(TrainConfig(env="math", lora=True, lr=1e-3))
