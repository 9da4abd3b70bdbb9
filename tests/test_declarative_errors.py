"""Broken declarative folders: each is refused with its file and line, exit code 2, nothing written.

Every case changes one thing in a small valid folder (:data:`BASE`) and runs ``envfoundry run
FOLDER --out OUT`` in this process (the CLI's own error handling); one case also goes through the
real entry point in a subprocess. Hostile cases (an expression reaching Python, a YAML tag that
would run code, a data path leaving the folder) are refused before anything runs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from envfoundry.cli import main
from envfoundry.declarative import DeclarativeError, load_folder
from tests.conftest import cli

ENV = """\
name: mini
version: 0.1.0
constants: {limit: 100}
tables:
  items:
    key: sku
    columns: {sku: string, qty: integer, price: number}
  moves:
    key: id
    columns:
      id: string
      sku: {type: string, ref: items}
      qty: integer
tools:
  get_item:
    description: One item by SKU.
    params: {sku: string}
    get: {table: items, key: sku, missing: "no item {sku}"}
  add_stock:
    description: Add units of an item to stock.
    params: {sku: string, qty: integer}
    requires:
      - check: get(items, sku) is not null
        error: "no item {sku}"
      - check: qty <= limit
        error: "at most {limit} units"
    writes: [items, moves]
    do:
      - update: items
        key: sku
        set: {qty: "=get(items, sku).qty + qty"}
      - insert: moves
        values: {id: "=next_key(moves, 'M-', 3)", sku: =sku, qty: =qty}
policy:
  file: policy.md
  rules:
    - id: look_first
      text: look the item up before adding stock
      tools: [add_stock]
      require: "any(before, it.tool == 'get_item' and it.ok and it.args.sku == call.args.sku)"
"""

TASKS = """\
types:
  restock:
    params:
      sku: string
      amount: integer
      cost: {type: number, optional: true}
    derive:
      - let: {item: "=get(items, sku)"}
    prompt: "Add {amount} units of {sku}."
    expect:
      require:
        - update: items
          key: =sku
          set: {qty: =item.qty + amount}
      allow: [{table: moves}]
    solution:
      - call: get_item
        args: {sku: =sku}
      - call: add_stock
        args: {sku: =sku, qty: =amount}
tasks:
  - {type: restock, params: {sku: A, amount: 3}}
  - {type: restock, split: train, params: {sku: B, amount: 2}}
"""

BASE = {
    "environment.yaml": ENV,
    "tasks.yaml": TASKS,
    "policy.md": "# Policy\n\nLook an item up before you add stock to it.\n",
    "data/items.csv": "sku,qty,price\nA,5,2.5\nB,0,10\n",
}

GENERATOR = """
generator:
  steps:
    - let: {n: "=randint(1, 3)"}
    - require: n > 5
      message: n is large
"""
PROCEDURAL = "procedural:\n  sizes: {train: 4, test: 4}\n"


def _edit(old: str, new: str, file: str = "environment.yaml") -> dict[str, tuple[str, str]]:
    return {file: (old, new)}


# (case, {file: (old, new) | full text}, expected file:line, expected words)
CASES = [
    ("bad_yaml", _edit("tables:\n  items:", "tables: [\n  items:"), "environment.yaml:6",
     "invalid YAML"),
    ("duplicate_key", _edit("version: 0.1.0\n", "version: 0.1.0\nversion: 0.2.0\n"), "environment.yaml:3",
     "duplicate key 'version' (first on line 2)"),
    ("wrong_type", _edit("constants:", "limits: {max_turns: ten}\nconstants:"), "environment.yaml:3",
     "limits.max_turns: expects a whole number, got 'ten'"),
    ("unknown_field", _edit("    columns: {sku: string, qty", "    colums: {sku: string, qty"), "environment.yaml:7",
     "unknown field 'colums'; did you mean 'columns'?"),
    ("unknown_column_type", _edit("qty: integer, price", "qty: integr, price"), "environment.yaml:7",
     "tables.items.columns.qty: expects one of"),
    ("unknown_table", _edit("get: {table: items, key", "get: {table: itemz, key"), "environment.yaml:18",
     "unknown table 'itemz'; did you mean 'items'?"),
    ("unknown_column_in_expression", _edit("=get(items, sku).qty + qty", "=get(items, sku).qtty + qty"),
     "environment.yaml:31", "table 'items' has no column 'qtty'; did you mean 'qty'?"),
    ("unknown_column_in_effect", _edit("sku: =sku, qty: =qty}", "skew: =sku, qty: =qty}"), "environment.yaml:33",
     "table 'moves' has no column 'skew'"),
    ("undeclared_write", _edit("writes: [items, moves]", "writes: [items]"), "environment.yaml:32",
     "tool 'add_stock' writes table 'moves' but does not declare it"),
    ("readonly_write", _edit("    key: sku\n", "    key: sku\n    readonly: true\n"), "environment.yaml:28",
     "tool 'add_stock' writes table 'items', which is readonly"),
    ("expression_imports", _edit("check: qty <= limit", "check: __import__('os').system('touch pwned')"),
     "environment.yaml:25", "'__import__' is not allowed: expressions cannot reach Python"),
    ("expression_dunder", _edit("check: qty <= limit", "check: ().__class__.__bases__"),
     "environment.yaml:25", "'__class__' is not allowed: expressions cannot reach Python"),
    ("expression_builtin", _edit("check: qty <= limit", "check: open('/etc/passwd') is not null"),
     "environment.yaml:25", "unknown function 'open'"),
    ("expression_method", _edit("check: qty <= limit", "check: sku.upper() == 'A'"),
     "environment.yaml:25", "only named functions can be called: write upper(x), not x.upper()"),
    ("expression_lambda", _edit("check: qty <= limit", "check: '(lambda x: x)(1) == 1'"),
     "environment.yaml:25", "lambda is not allowed"),
    ("expression_syntax", _edit("check: qty <= limit", "check: qty <=> limit"),
     "environment.yaml:25", "syntax error"),
    ("chance_in_a_tool", _edit("check: qty <= limit", "check: qty <= randint(1, limit)"),
     "environment.yaml:25", "randint() draws at random: chance is available only in generator steps"),
    ("yaml_python_tag", _edit("constants: {limit: 100}",
                              "constants: {limit: !!python/object/apply:os.system [touch pwned]}"),
     "environment.yaml:3", "the YAML tag '!!python/object/apply:os.system' is not allowed"),
    ("data_path_escapes", _edit("    key: sku\n", "    key: sku\n    data: ../../outside.csv\n"),
     "environment.yaml:7", "path '../../outside.csv' leaves the environment folder"),
    ("csv_wrong_type", {"data/items.csv": "sku,qty,price\nA,5,2.5\nB,five,10\n"}, "data/items.csv:3",
     "column 'qty' expects a whole number, got 'five'"),
    ("csv_unknown_column", {"data/items.csv": "sku,qty,prize\nA,5,2.5\n"}, "data/items.csv:1",
     "table 'items' has no column 'prize'"),
    ("csv_duplicate_key", {"data/items.csv": "sku,qty,price\nA,5,2.5\nA,1,3\n"}, "data/items.csv:3",
     "key 'A' appears twice"),
    ("task_param_type", _edit("params: {sku: A, amount: 3}}", "params: {sku: A, amount: 3, cost: ten}}",
                              "tasks.yaml"), "tasks.yaml:22", "field 'cost' expects a number, got 'ten'"),
    ("task_unknown_param", _edit("params: {sku: A, amount: 3}}", "params: {sku: A, amount: 3, colour: red}}",
                                 "tasks.yaml"), "tasks.yaml:22", "task type 'restock' has no parameter 'colour'"),
    ("task_unknown_type", _edit("{type: restock, split: train", "{type: restok, split: train", "tasks.yaml"),
     "tasks.yaml:23", "unknown task type 'restok'; did you mean 'restock'?"),
    ("template_unknown_name", _edit("Add {amount} units", "Add {amout} units", "tasks.yaml"), "tasks.yaml:9",
     "unknown name 'amout'; did you mean 'amount'?"),
    ("solution_unknown_tool", _edit("- call: add_stock", "- call: add_stok", "tasks.yaml"), "tasks.yaml:19",
     "the solution calls unknown tool 'add_stok'; did you mean 'add_stock'?"),
    ("solution_bad_argument", _edit("args: {sku: =sku, qty: =amount}", "args: {sku: =sku, quantity: =amount}",
                                    "tasks.yaml"), "tasks.yaml:20", "tool 'add_stock' has no parameter 'quantity'"),
    ("rule_unknown_tool", _edit("tools: [add_stock]", "tools: [add_stocks]"), "environment.yaml:39",
     "rule 'look_first' names unknown tool 'add_stocks'"),
    ("unsatisfiable_generator", {"environment.yaml": ENV + GENERATOR, "tasks.yaml": TASKS + PROCEDURAL},
     "environment.yaml:45", "the generator cannot satisfy `n > 5` (n is large): it failed in all 100 attempts"),
    ("missing_policy", {"policy.md": None}, "environment.yaml:35", "the policy file 'policy.md' does not exist"),
    ("missing_tasks", {"tasks.yaml": None}, "", "the folder has no tasks.yaml"),
    ("enum_without_values", _edit("qty: integer, price: number}", "qty: integer, price: enum}"),
     "environment.yaml:7", "'price': an enum needs its values"),
    ("reference_to_unknown_row", {"data/moves.csv": "id,sku,qty\nM-001,Z,3\n"}, "data/moves.csv:2",
     "column 'sku' of table 'moves' row 'M-001' holds 'Z', which is not a key of table 'items'"),
]


def _write(folder: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        p = folder / name
        if text is None:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _folder(tmp: Path, change: dict[str, object]) -> Path:
    files: dict[str, str | None] = dict(BASE)
    for name, what in change.items():
        if isinstance(what, tuple):
            old, new = what
            assert old in (files[name] or ""), f"the case's edit does not apply to {name}: {old!r}"
            files[name] = (files[name] or "").replace(old, new, 1)
        else:
            files[name] = what  # type: ignore[assignment]
    folder = tmp / "env"
    folder.mkdir()
    _write(folder, files)
    return folder


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_the_base_folder_is_valid(tmp_path):
    env = load_folder(_folder(tmp_path, {}))
    assert env.name == "mini" and len(env.tasks("test")) == 1 and env.splits == ("test", "train")


@pytest.mark.parametrize(("case", "change", "where", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_broken_folder_is_refused_with_its_line(tmp_path, capsys, monkeypatch, case, change, where, words):
    folder = _folder(tmp_path, change)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    code = main(["run", str(folder), "--model", "scripted:oracle", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    flat = " ".join(err.split())
    assert code == 2, err
    assert words in flat, err
    if where:
        assert re.search(rf"{re.escape(where)}: ", flat), err
    assert "Traceback" not in err
    assert not out.exists()
    assert _snapshot(tmp_path) == before  # nothing written: no run folder, no file in the folder, no 'pwned'
    with pytest.raises(DeclarativeError):
        load_folder(folder)


def test_check_and_audit_refuse_a_broken_folder_too(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, CASES[6][1])  # an unknown column in an expression
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    for argv in (["check", str(folder)], ["audit", str(folder), "--limit", "1"]):
        assert main(argv) == 2
        assert "table 'items' has no column 'qtty'" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_the_real_entry_point_exits_2(tmp_path):
    folder = _folder(tmp_path, CASES[10][1])  # __import__('os') in a precondition
    r = cli("run", "--env", str(folder), "--model", "scripted:oracle", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "environment.yaml:25" in r.stderr and "'__import__' is not allowed" in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()


def test_an_unknown_env_arg_is_refused(tmp_path):
    with pytest.raises(Exception, match="takes the arguments judge"):
        load_folder(_folder(tmp_path, {}), {"colour": "red"})


def test_a_judge_without_a_rubric_is_refused(tmp_path):
    with pytest.raises(Exception, match="needs a rubric.yaml"):
        load_folder(_folder(tmp_path, {}), {"judge": "local"})


def test_a_bad_rubric_is_refused_with_its_line(tmp_path):
    folder = _folder(tmp_path, {"rubric.yaml": "items:\n  - id: Polite\n    question: Was it polite?\n"})
    with pytest.raises(DeclarativeError, match=r"rubric.yaml:2: items\[0\].id: 'Polite' is not allowed"):
        load_folder(folder)
