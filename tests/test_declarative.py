"""Declarative environments (a folder of YAML, CSV and Markdown): loading, tools, grading, task
sources, the shipped JSON Schema, and the example in examples/inventory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from envfoundry import Message, ToolCall, evaluate, load
from envfoundry.cli.output import env_stem
from envfoundry.core.loading import canonical_spec
from envfoundry.declarative import DeclarativeError, json_schemas, load_folder, schema_path
from envfoundry.declarative.source import read_yaml
from tests.conftest import ROOT

INVENTORY = ROOT / "examples" / "inventory"


def _call(name: str, **args) -> Message:
    return Message("assistant", "", [ToolCall(name, args)])


def _play(env, task, actions):
    ep = env.reset(task, seed=0)
    results = []
    for a in actions:
        if ep.terminated or ep.truncated:
            break
        res = ep.step(a)
        results += [m.content for m in res.observation]
    return ep, results, env.grade(ep)


# ------------------------------------------------------------------ the example and loading
def test_the_example_runs_with_the_oracle_and_not_without_work(tmp_path):
    oracle = evaluate(str(INVENTORY), model="scripted:oracle", out=tmp_path / "o")
    noop = evaluate(str(INVENTORY), model="scripted:noop", out=tmp_path / "n")
    assert oracle.summary["pass_rate"] == 1.0 and oracle.summary["n_scored"] == 5
    assert noop.summary["pass_rate"] == 0.0


def test_a_folder_loads_by_path_with_or_without_dot_slash(monkeypatch):
    monkeypatch.chdir(ROOT)
    a, b = load("examples/inventory"), load("./examples/inventory")
    assert a.name == b.name == "inventory"
    assert [t.id for t in a.tasks("test")] == [t.id for t in b.tasks("test")]
    assert a.loaded_from == (str(INVENTORY), {})  # absolute: worker processes and --resume load it anywhere
    assert canonical_spec("examples/inventory") == str(INVENTORY)
    assert env_stem("./examples/inventory") == "inventory" and env_stem("ledger") == "ledger"


def test_a_folder_without_environment_yaml_is_not_an_environment(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(Exception, match="unknown environment"):
        load(str(tmp_path / "notes"))


# ------------------------------------------------------------------ the JSON Schema
def test_the_shipped_json_schema_is_what_the_models_generate():
    for name, schema in json_schemas().items():
        shipped = json.loads(schema_path(name).read_text())
        assert shipped == json.loads(json.dumps(schema)), (
            f"schema/{name}.schema.json is stale: run `python -m envfoundry.declarative`")
        jsonschema.Draft202012Validator.check_schema(shipped)


def test_the_json_schema_accepts_the_shipped_folders_and_rejects_a_typo():
    env_s = json.loads(schema_path("environment").read_text())
    tasks_s = json.loads(schema_path("tasks").read_text())
    for folder in (INVENTORY, ROOT / "src" / "envfoundry" / "envs" / "ledger"):
        jsonschema.validate(json.loads(json.dumps(read_yaml(folder / "environment.yaml", "e"))), env_s)
        jsonschema.validate(json.loads(json.dumps(read_yaml(folder / "tasks.yaml", "t"))), tasks_s)
    doc = json.loads(json.dumps(read_yaml(INVENTORY / "environment.yaml", "e")))
    doc["tables"]["items"]["colums"] = doc["tables"]["items"].pop("columns")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, env_s)


# ------------------------------------------------------------------ tools
@pytest.fixture(scope="module")
def inventory():
    return load_folder(INVENTORY)


def _task(env, kind: str):
    return next(t for s in env.splits for t in env.tasks(s) if t.data["type"] == kind)


def test_tools_read_write_and_refuse_with_the_declared_errors(inventory):
    task = _task(inventory, "receive")
    ep, res, _ = _play(inventory, task, [
        _call("find_items", location="A1"),
        _call("get_item", sku="SKU-999"),
        _call("receive", po="PO-0001", qty=5),
        _call("receive", po="PO-0001", qty=100),
        _call("receive", po="PO-0001", qty=100),
        _call("stock_value", location="A1"),
    ])
    found = json.loads(res[0])
    assert found["count"] == 2 and [r["sku"] for r in found["rows"]] == ["SKU-100", "SKU-101"]
    assert res[1] == "error: no item with SKU SKU-999"
    assert res[2] == "error: purchase order PO-0001 is for 100 units, not 5; receive the whole order"
    assert res[3] == "received 100 x SKU-100 on PO-0001"
    assert res[4] == "error: purchase order PO-0001 is already received"
    assert json.loads(res[5]) == 1784.0  # 140 x 12.50 + 8 x 4.25
    assert ep.world.get("items", "SKU-100")["on_hand"] == 140
    assert ep.world.get("movements", "MV-0002") == {"id": "MV-0002", "sku": "SKU-100", "qty": 100, "po": "PO-0001"}
    assert ep.world_before.get("items", "SKU-100")["on_hand"] == 40  # the initial world is untouched


def test_bad_arguments_are_errors_for_the_agent_not_crashes(inventory):
    task = _task(inventory, "reorder")
    _, res, _ = _play(inventory, task, [
        _call("create_po", sku="SKU-101", qty=0),
        _call("create_po", sku="SKU-101", qty=9999),
        _call("find_items", location="Z9"),
        Message("assistant", "", [ToolCall("calculate_everything", {})]),
    ])
    assert res[0].startswith("error: tool 'create_po' expects `qty: int`")
    assert res[1] == "error: an order is at most 500 units"
    assert res[2].startswith("error: tool 'find_items' expects `location: enum`")
    assert res[3].startswith("error: unknown tool 'calculate_everything'")


def _mini(tmp_path: Path, env_extra: str = "", tools: str = "", tasks: str = "", data: dict | None = None) -> Path:
    folder = tmp_path / "mini"
    (folder / "data").mkdir(parents=True)
    (folder / "environment.yaml").write_text(textwrap.dedent("""\
        name: mini
        answer_format: "<answer>{answer}</answer>"
        tables:
          items:
            key: sku
            columns: {sku: string, qty: integer, price: number}
          moves:
            key: id
            columns: {id: string, sku: {type: string, ref: items}, qty: integer}
        tools:
          get_item:
            description: One item.
            params: {sku: string}
            get: {table: items, key: sku}
          move:
            description: Record a move and then a second one with the same id (the second fails).
            params: {sku: string, qty: integer, twice: {type: boolean, default: false}}
            writes: [items, moves]
            do:
              - update: items
                key: sku
                set: {qty: "=get(items, sku).qty - qty"}
              - insert: moves
                values: {id: M-1, sku: =sku, qty: =qty}
              - insert: moves
                when: =twice
                values: {id: M-1, sku: =sku, qty: =qty}
          log:
            description: Log a move (its SKU must be an item's).
            params: {id: string, sku: string, qty: integer}
            writes: [moves]
            do:
              - insert: moves
                values: {id: =id, sku: =sku, qty: =qty}
        """) + tools + textwrap.dedent(env_extra))
    for name, text in (data or {"items.csv": "sku,qty,price\nA,5,2.5\nB,0,10\n"}).items():
        (folder / "data" / name).write_text(textwrap.dedent(text))
    (folder / "tasks.yaml").write_text(textwrap.dedent(tasks or """\
        types:
          total:
            params: {sku: string}
            derive:
              - let: {value: "=get(items, sku).qty * get(items, sku).price"}
            prompt: "What is the stock of {sku} worth?"
            answer: {value: =value, tol: 0.01}
            solution:
              - call: get_item
                args: {sku: =sku}
              - answer: "{value:.2f}"
        tasks:
          - {type: total, params: {sku: A}}
        """))
    return folder


def test_effects_are_all_or_nothing_and_references_are_checked(tmp_path):
    env = load_folder(_mini(tmp_path))
    task = env.tasks("test")[0]
    ep, res, _ = _play(env, task, [_call("move", sku="A", qty=2, twice=True), _call("log", id="L", sku="Z", qty=1),
                                   _call("move", sku="Z", qty=1), _call("move", sku="A", qty=2)])
    assert res[0] == "error: moves 'M-1' already exists"
    assert res[1] == "error: sku 'Z' is not a row of items"
    assert res[2] == "error: move: cannot apply - to null and number 1"  # no `requires`: the expression says
    assert res[3] == "updated items A; inserted moves M-1"
    assert ep.world.get("items", "A")["qty"] == 3  # the failed call changed nothing; the good one once


def test_answers_are_read_from_the_answer_format(tmp_path):
    env = load_folder(_mini(tmp_path))
    task = env.tasks("test")[0]
    assert task.data["answer"] == {"value": 12.5, "tol": 0.01, "kind": "number"}
    for text, passed in [("<answer>12.50</answer>", True), ("It is <answer> $12.5 </answer>.", True),
                         ("<answer>12.5</answer> or <answer>13</answer>", False), ("12.5", False),
                         ("<answer>12.6</answer>", False), ("<answer>twelve</answer>", False),
                         ("<answer>12.5</answer> <answer>12.50</answer>", True)]:
        _, _, score = _play(env, task, [Message("assistant", text)])
        assert score.passed is passed, text


def test_trace_rules_and_collateral_decide_the_score(tmp_path):
    rules = """\
        policy:
          file: policy.md
          rules:
            - id: look_first
              text: look the item up first
              tools: [move]
              require: "any(before, it.tool == 'get_item' and it.ok and it.args.sku == call.args.sku)"
        """
    tasks = """\
        types:
          ship:
            params: {sku: string, n: integer}
            prompt: "Ship {n} of {sku}."
            expect:
              require:
                - update: items
                  key: =sku
                  set: {qty: "=get(items, sku).qty - n"}
              allow: [{table: moves}]
            solution:
              - call: get_item
                args: {sku: =sku}
              - call: move
                args: {sku: =sku, qty: =n}
        tasks:
          - {type: ship, params: {sku: A, n: 2}}
        """
    folder = _mini(tmp_path, env_extra=rules, tasks=tasks)
    (folder / "policy.md").write_text("Look an item up before you move it.\n")
    env = load_folder(folder)
    task = env.tasks("test")[0]
    assert env.tools["read_policy"].fn(None) == "Look an item up before you move it.\n"
    good = [_call("get_item", sku="A"), _call("move", sku="A", qty=2), Message("assistant", "done")]
    assert _play(env, task, good)[2].passed
    _, _, blind = _play(env, task, good[1:])
    assert not blind.passed and blind.value == 0.0
    assert blind.breakdown["rules"]["look_first"]["violations"] == ["move(sku='A', qty=2, twice=False): look the "
                                                                   "item up first"]
    _, _, wrong = _play(env, task, [_call("get_item", sku="A"), _call("move", sku="A", qty=3),
                                    Message("assistant", "done")])
    assert not wrong.passed and "missed 'update items[A]'" in wrong.explanation


def test_written_tasks_from_a_csv_file_are_typed_with_their_lines(tmp_path):
    tasks = """\
        types:
          total:
            params: {sku: string, factor: number}
            derive:
              - let: {value: "=get(items, sku).qty * get(items, sku).price * factor"}
            prompt: "What is {factor} times the stock of {sku} worth?"
            answer: {value: =value, tol: 0.01}
            solution:
              - answer: "{value:.2f}"
        tasks: tasks.csv
        """
    folder = _mini(tmp_path, tasks=tasks)
    (folder / "tasks.csv").write_text("type,split,sku,factor\ntotal,test,A,2\ntotal,train,B,1.5\n")
    env = load_folder(folder)
    assert [t.data["answer"]["value"] for t in env.tasks("test")] == [25.0]
    assert env.tasks("train")[0].data["params"] == {"sku": "B", "factor": 1.5}
    (folder / "tasks.csv").write_text("type,split,sku,factor\ntotal,test,A,2\ntotal,train,B,ten\n")
    with pytest.raises(DeclarativeError, match=r"^tasks.csv:3: field 'factor' expects a number, got 'ten'$"):
        load_folder(folder)


def test_json_data_files_are_typed_with_their_lines(tmp_path):
    folder = _mini(tmp_path, data={"items.json": '[\n  {"sku": "A", "qty": 5, "price": 2.5},\n'
                                                 '  {"sku": "B", "qty": "lots", "price": 1}\n]\n'})
    with pytest.raises(DeclarativeError, match=r"^data/items.json:3: column 'qty' expects a whole number, got 'lots'"):
        load_folder(folder)


# ------------------------------------------------------------------ generated tasks
GENERATED = """\
    generator:
      steps:
        - let:
            n: "=randint(1, 9)"
            bump: "=randint(1, 3)"
        - require: n % 2 == 1
          message: odd stock only
        - rows: items
          repeat: 3
          values: {sku: "='S' + str(i)", qty: "=n + i", price: "=money(uniform(1, 5))"}
    """
GEN_TASKS = """\
    types:
      ship:
        params: {sku: string}
        generate:
          - let: {sku: "='S' + str(randint(0, 2))"}
        prompt: "Ship {bump} of {sku}."
        expect:
          require:
            - update: items
              key: =sku
              set: {qty: "=get(items, sku).qty - bump"}
          allow: [{table: moves}]
        solution:
          - call: move
            args: {sku: =sku, qty: =bump}
        metadata: {stock: "=get(items, sku).qty"}
    procedural:
      sizes: {train: 30, test: 10}
    """


def test_generated_tasks_are_pure_functions_of_the_seed(tmp_path):
    folder = _mini(tmp_path, env_extra=GENERATED, tasks=GEN_TASKS, data={"moves.csv": "id,sku,qty\n"})
    a, b = load_folder(folder), load_folder(folder)
    ids = [t.id for t in a.tasks("train", seed=0)]
    assert ids == [t.id for t in b.tasks("train", seed=0)]
    assert ids != [t.id for t in b.tasks("train", seed=1)]
    assert not set(ids) & {t.id for t in a.tasks("test", seed=0)}
    assert {t.metadata["stock"] % 2 for t in a.tasks("train") if t.data["params"]["sku"] == "S0"} == {1}
    run = evaluate(a, model="scripted:oracle", out=tmp_path / "run")
    assert run.summary["pass_rate"] == 1.0 and run.summary["n_scored"] == 10


def test_a_written_task_may_generate_its_world_from_a_seed(tmp_path):
    tasks = GEN_TASKS.replace("    procedural:\n      sizes: {train: 30, test: 10}\n",
                              "    tasks:\n      - {type: ship, seed: 7, world: generate}\n"
                              "      - {type: ship, seed: 8, world: generate, split: train}\n")
    folder = _mini(tmp_path, env_extra=GENERATED, tasks=tasks, data={"moves.csv": "id,sku,qty\n"})
    a, b = load_folder(folder), load_folder(folder)
    assert a.tasks("test")[0].world == b.tasks("test")[0].world  # the same seed makes the same world
    assert a.tasks("test")[0].world != a.tasks("train")[0].world
    (folder / "tasks.yaml").write_text(textwrap.dedent(tasks) + "  - {type: ship, seed: 7, world: generate}\n")
    with pytest.raises(DeclarativeError, match=r"tasks.yaml:\d+: this task is the same as the one at tasks.yaml:\d+"):
        load_folder(folder)


def test_whole_trace_rules_forbidden_calls_and_the_call_budget(tmp_path):
    extra = """\
        limits: {max_tool_calls: 3}
        policy:
          file: policy.md
          tool: null
          rules:
            - id: few_lookups
              text: at most two lookups
              check: "count(calls, it.tool == 'get_item') <= 2"
            - id: never_move_b
              text: item B never moves
              tools: [move]
              when: "call.args.sku == 'B'"
              forbid: true
        """
    folder = _mini(tmp_path, env_extra=extra)
    (folder / "policy.md").write_text("B stays.\n")
    env = load_folder(folder)
    assert "read_policy" not in env.tools
    task = env.tasks("test")[0]
    answer = Message("assistant", "<answer>12.5</answer>")
    ep, res, score = _play(env, task, [_call("get_item", sku="A")] * 4 + [answer])
    assert res[3] == "error: the tool-call budget of this task (3 calls) is spent; give your answer"
    assert not score.passed and score.breakdown["rules"]["few_lookups"] == {"ok": False,
                                                                            "violations": ["at most two lookups"]}
    _, _, score = _play(env, task, [_call("move", sku="B", qty=0), Message("assistant", "<answer>12.5</answer>")])
    assert not score.breakdown["rules"]["never_move_b"]["ok"]
    assert score.breakdown["answer"]["ok"] and not score.passed
    _, _, score = _play(env, task, [_call("get_item", sku="A"), Message("assistant", "<answer>12.5</answer>")])
    assert score.passed


def test_the_calculator_tool_takes_only_arithmetic(tmp_path):
    folder = _mini(tmp_path, tools="  calc:\n    description: Arithmetic.\n    calculator: true\n")
    env = load_folder(folder)
    task = env.tasks("test")[0]
    _, res, _ = _play(env, task, [_call("calc", expression="(1,250,000 * 0.015) / 365 * 31"),
                                  _call("calc", expression="__import__('os').getcwd()"),
                                  _call("calc", expression="1e308 * 1e308"), _call("calc", expression="1 / 0")])
    assert json.loads(res[0])["result"] == pytest.approx(1592.4657534247)
    assert res[1].startswith("error: calc: expression") and "not allowed" in res[1]
    assert res[2] == "error: calc: the result is not a finite number"
    assert res[3] == "error: calc: division by zero (1 / 0)"
