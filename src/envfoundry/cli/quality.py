"""``check``, ``audit``, ``calibrate`` and ``agree``: the quality commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import UsageError
from . import vocabulary as V
from ._common import (
    EnvArg,
    EnvArgOpt,
    EnvOpt,
    _env_args,
    _env_spec,
    _escape,
    app,
    check_limit,
    console,
    err,
    note_workers,
)


@app.command("check")
def check_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    limit: Annotated[Optional[int], V._opt("--limit", "tasks to check (default: 20)")] = None,
    samples: Annotated[Optional[int], V._opt("--samples", "scripted rollouts per task (default: 2)")] = None,
    seed: V.Seed = None,
    split: V.Split = None,
    json_out: V.Json = False,
    tasks_old: Annotated[Optional[int], V.hidden("--tasks")] = None,
) -> None:
    """Conformance checks for any environment; exit 1 if a check fails."""
    import json

    from rich.table import Table

    from ..core.loading import load
    from ..quality.check import CheckConfig, check_env

    spec = _env_spec(env, env_opt)
    tasks = V.renamed(limit, tasks_old, "--tasks", "--limit")
    samples = 2 if samples is None else samples
    seed = 0 if seed is None else seed
    e = load(spec, _env_args(env_arg))
    if split is not None and split not in e.splits:
        raise UsageError(f"environment {e.name!r} has no split {split!r} (splits: {', '.join(e.splits)})")
    check_limit(e, split, tasks, seed)
    tasks = 20 if tasks is None else tasks
    report = check_env(e, spec=spec, config=CheckConfig(tasks=tasks, samples=samples, seed=seed, split=split))
    if json_out:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        t = Table(title=_escape(f"check {e.name} {e.version}"), title_justify="left")
        for c in ("check", "result", "detail"):
            t.add_column(c, overflow="fold")
        style = {"pass": "green", "fail": "bold red", "skipped": "yellow"}
        for r in report.results:
            detail = r.detail + (f"\ntask {r.task_id}" if r.task_id else "")
            if r.example is not None:
                detail += "\nexample: " + json.dumps(r.example, default=str)[:600]
            t.add_row(r.name, f"[{style[r.status]}]{r.status}", _escape(detail))
        console.print(t)
        failed = [r.name for r in report.results if r.status == "fail"]
        console.print(f"[bold red]{len(failed)} of {len(report.results)} checks failed: {', '.join(failed)}"
                      if failed else f"[green]{sum(r.status == 'pass' for r in report.results)} checks passed")
    if not report.ok:
        raise typer.Exit(1)


@app.command("audit")
def audit_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    limit: Annotated[Optional[int], V._opt("--limit", "tasks to probe (default: 30)")] = None,
    samples: Annotated[Optional[int], V._opt("--samples", "rollouts per task and probe (default: 2)")] = None,
    seed: Annotated[Optional[int], V._opt("--seed", "seed: tasks, rollouts, mutations (default: 0)")] = None,
    split: V.Split = None,
    out: Annotated[Optional[Path], V._opt("--out", "results folder (default: a new quality/ENV/audit-TIME)")] = None,
    resume: V.Resume = False,
    force: V.Force = False,
    backend: V.Backend = "local",
    ray_address: V.RayAddress = None,
    tasks_old: Annotated[Optional[int], V.hidden("--tasks")] = None,
    probes: Annotated[Optional[str], typer.Option(help="comma-separated probes to run (default all)")] = None,
    fail_on: Annotated[Optional[str], typer.Option(
        "--fail-on", help="finding kinds that exit 1, comma-separated: exploit, crash, stall, reference, error, "
        "reward_leak, leak, lenient, strict; all; none (default: exploit,crash,stall,reference,error)")] = None,
    json_out: Annotated[bool, typer.Option("--json", metavar="", help="machine-readable report on stdout")] = False,
) -> None:
    """Probe ENV for reward hacking and mutation-test its grader; exit 1 on a finding of a --fail-on kind."""
    import json

    from ..core.loading import load
    from ..display import audit_report
    from ..quality.audit import AUDIT_FILE, AuditConfig, audit_env, default_results_dir, parse_fail_on
    from .output import default_out, prepare_out

    spec = _env_spec(env, env_opt)
    tasks = V.renamed(limit, tasks_old, "--tasks", "--limit")
    fail_kinds = parse_fail_on(fail_on)
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the audit to continue)")
    e = load(spec, _env_args(env_arg))
    if not resume:
        check_limit(e, split, tasks, 0 if seed is None else seed)
    if out is None:
        out = default_out(default_results_dir(e.name), "audit")
    prepare_out(out, command="audit", resume=resume, force=force, spec=spec)
    if not json_out:
        err.print(f"{'continuing' if resume else 'writing'} the audit in [bold]{_escape(str(out))}[/bold]",
                  soft_wrap=True)
    names = [p.strip() for p in probes.split(",") if p.strip()] if probes is not None else None
    if names is not None and not names:
        raise UsageError("--probes needs at least one probe name")
    from ..rollout.config import RunConfig

    checked = RunConfig.of(None, {"backend": backend, "ray_address": ray_address})  # exit 2 for a bad one
    cfg = AuditConfig(tasks=tasks, samples=samples, seed=seed, split=split, probes=names, out=out, resume=resume,
                      fail_on=fail_kinds, backend=checked.backend, ray_address=checked.ray_address)
    report = audit_env(e, spec=spec, config=cfg)
    failing = report.failing(fail_kinds)
    if json_out:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for part in audit_report(report, fail_on=fail_kinds):
            console.print(part)
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items())
        verdict = (f"[bold red]{len(failing)} failing finding(s)" if failing else "[green]no failing findings") + (
            f"[/] ({counts}; failing kinds: {', '.join(fail_kinds) or 'none'})" if counts else "[/]")
        console.print(f"{verdict}; stored in [bold]{_escape(str(report.out / AUDIT_FILE))}[/bold]", soft_wrap=True)
    if failing:
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    model: V.Model = None,
    base_url: V.BaseUrl = None,
    api_key_env: V.ApiKeyEnv = None,
    slots: V.Slots = None,
    temperature: V.Temperature = None,
    top_p: V.TopP = None,
    max_tokens: V.MaxTokens = None,
    tool_mode: Annotated[str, V._opt("--tool-mode", "auto, native or text tool calling")] = "auto",
    split: V.Split = None,
    limit: V.Limit = None,
    samples: Annotated[Optional[int], V._opt(
        "--samples", "initial rollouts per task, a GRPO group (default: 8)")] = None,
    budget: Annotated[Optional[int], V._opt("--budget", "total rollouts (default: 2 x tasks x samples)")] = None,
    band: Annotated[Optional[str], typer.Option(help="useful pass rates LO,HI (default: 0.02,0.98)")] = None,
    seed: V.Seed = None,
    task_seed: V.TaskSeed = None,
    concurrency: Annotated[int, V._opt("--concurrency", "rollouts in flight at once")] = 32,
    workers: V.Workers = 1,
    backend: V.Backend = "local",
    ray_address: V.RayAddress = None,
    timeout: V.Timeout = None,
    max_turns: V.MaxTurns = None,
    knobs: Annotated[bool, typer.Option("--knobs", metavar="",
                                        help="pass rate by difficulty knob (table, knobs.png)")] = False,
    out: Annotated[Optional[Path], V._opt(
        "--out", "output folder (default: a new quality/ENV/calibration-TIME, where `train` finds the newest)")] = None,
    resume: V.Resume = False,
    force: V.Force = False,
    quiet: V.Quiet = False,
) -> None:
    """Measure each task's pass rate for a model, adaptively, and keep the tasks in the band."""
    from pydantic import ValidationError

    from ..quality.calibrate import CalibrateConfig, calibrate, parse_band

    spec = _env_spec(env, env_opt)
    from ..rollout.config import ModelOptions

    model_options = ModelOptions.of(dict(base_url=base_url, api_key_env=api_key_env, tool_mode=tool_mode,
                                         temperature=temperature, top_p=top_p, max_tokens=max_tokens, slots=slots))
    if model is None and not resume:
        raise UsageError("calibrate needs --model (e.g. --model local)")
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the calibration to continue)")
    if out is None:  # where `envfoundry train` looks for the newest, next to the audit's results
        from ..core.loading import load
        from ..rollout.selection import calibrations_dir
        from .output import default_out

        out = default_out(calibrations_dir(load(spec, _env_args(env_arg)).name), "calibration")
    from .output import prepare_out

    prepare_out(out, command="calibrate", resume=resume, force=force, spec=spec)
    if not quiet:
        err.print(f"{'continuing' if resume else 'writing'} the calibration in [bold]{_escape(str(out))}[/bold]",
                  soft_wrap=True)
    try:
        config = CalibrateConfig(
            split=split, limit=limit, samples=samples, budget=budget, band=parse_band(band) if band else None,
            seed=seed, task_seed=task_seed, concurrency=concurrency, timeout_s=timeout, max_turns=max_turns,
            knobs=knobs,
        )
    except ValidationError as e:  # e.g. --concurrency 0
        first = e.errors()[0]
        name = {"timeout_s": "timeout"}.get(str(first["loc"][0]), str(first["loc"][0])).replace("_", "-")
        raise UsageError(f"--{name}: {first['msg']}, got {first.get('input')!r}") from None

    def on_round(rnd, resumed: bool) -> None:  # noqa: ANN001
        what = "finishing" if resumed else "running"
        console.print(f"{what} round {rnd.number}: {len(rnd.task_ids)} tasks x {rnd.samples} samples "
                      f"(samples {rnd.offset}-{rnd.offset + rnd.samples - 1})")

    note_workers(workers if backend == "local" else 1, concurrency)
    from ..rollout.config import RunConfig

    checked = RunConfig.of(None, {"backend": backend, "ray_address": ray_address})  # exit 2 for a bad one
    result = calibrate(
        spec, model=model, out=out, config=config, resume=resume, progress=None if quiet else _FreshProgress(),
        on_round=on_round, env_args=_env_args(env_arg) if env_arg else None, workers=workers,
        model_options=model_options.resolve_kwargs(), backend=checked.backend, ray_address=checked.ray_address,
    )
    _print_calibration(result)
    n_err, n_ok = result.summary["errors"], result.summary["scored_samples"]
    if n_err:
        example = _first_error(Path(result.out))
        why = f"{n_err} rollout(s) ended in errors and are not samples" + (f", e.g. {example}" if example else "")
        if not n_ok:
            err.print(f"[red]error:[/red] {_escape(why)}; no rollout was scored, so nothing is calibrated")
            raise typer.Exit(1)
        err.print(f"[yellow]warning:[/yellow] {_escape(why)}")


def _first_error(out: Path) -> str:
    """The first error recorded in a calibration's round stores: ``outcome: last line``."""
    from ..rollout.store import RunStore

    for d in sorted(p.parent for p in out.glob("round-*/manifest.json")):
        for rec in RunStore.open(d).records():
            if rec.get("error"):
                return f"{rec['outcome']}: {rec['error'].strip().splitlines()[-1]}"
    return ""


class _FreshProgress:
    """A new progress bar per round."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, total: int, done: int) -> None:
        from ..display import RichProgress

        self._bar = RichProgress(err)
        self._bar.start(total, done)

    def advance(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.advance(record)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_calibration(result) -> None:  # noqa: ANN001
    from rich.table import Table

    from ..display import at_k

    s = result.summary
    t = Table(title=_escape(f"calibration - {s['env']} {s['env_version']} - {s['model']}"), title_justify="left")
    for c in ("verdict", "tasks", "share"):
        t.add_column(c, overflow="fold")
    for v, d in s["verdicts"].items():
        t.add_row(v, str(d["tasks"]), f"{d['share']:.1%}")
    console.print(t)
    zv = s["zero_variance"]

    def share(d: dict) -> str:
        return "-" if d["share"] is None else f"{d['share']:.1%} of {d['groups']}"

    info = Table(show_header=False)
    info.add_column(style="bold", overflow="fold")
    info.add_column(overflow="fold")
    lo, hi = s["band"]
    info.add_row("band", f"[{lo:g}, {hi:g}]  (exact interval per task, 95% coverage across its rounds)")
    info.add_row("rollouts", f"{s['budget_used']} of budget {s['budget']} in {len(s['rounds'])} round(s); "
                 f"{s['scored_samples']} scored, {s['errors']} errors")
    info.add_row("pass@k", at_k(s["pass_at_k"]))
    info.add_row("pass^k", at_k(s["pass_hat_k"]))
    info.add_row(f"zero-variance groups (K={s['samples']})",
                 f"before {share(zv['before'])}; in-band {share(zv['after_in_band'])}; "
                 f"keep {share(zv['after_keep'])}")
    info.add_row("keep / drop", f"{s['keep']} / {s['drop']}  (lo <= p_hat <= hi)")
    info.add_row("calibrated split", f"{s['calibrated_split']} in-band tasks")
    console.print(info)
    for knob, entries in result.knobs.items():
        kt = Table(title=_escape(f"pass rate by {knob}"), title_justify="left")
        for c in ("value", "tasks", "samples", "pass rate", "95% CI"):
            kt.add_column(c, overflow="fold")
        for e in entries:
            rate = "-" if e["pass_rate"] is None else f"{e['pass_rate']:.3f}"
            kt.add_row(str(e["value"]), str(e["tasks"]), str(e["samples"]), rate,
                       f"{e['ci_lo']:.3f}-{e['ci_hi']:.3f}")
        console.print(kt)
    if result.plot_hint:
        err.print("[yellow]plots skipped:[/yellow] matplotlib is not installed; install it with: "
                  + _escape(result.plot_hint))
    out = _escape(str(result.out))
    console.print(f"calibration stored in [bold]{out}[/bold]; run the in-band tasks with "
                  f"`envfoundry run {_escape(s['env_spec'])} --split calibrated --calibration {out}`")


@app.command("agree")
def agree_cmd(
    labels: Annotated[str, typer.Option(help="labels: JSON Lines or CSV (columns id, label, annotator), or a "
                                        "built-in env name")],
    scores: Annotated[Optional[Path], typer.Option(help="grader scores: JSON Lines or CSV (id, score|passed|label)")
                      ] = None,
    run: Annotated[Optional[Path], typer.Option(help="a run directory: its stored scores")] = None,
    judge: Annotated[Optional[str], typer.Option(help="run ENV's rubric judge over the items")] = None,
    model: Annotated[Optional[str], typer.Option(help="the judge's model: local, openai:NAME")] = None,
    items: Annotated[Optional[Path], typer.Option(help="transcripts JSONL (default: items.jsonl by labels)")] = None,
    id_field: Annotated[str, typer.Option(help="the labels' id column (also read in --scores without 'id')")] = "id",
    label_field: Annotated[str, typer.Option(help="the labels' label column")] = "label",
    annotator_field: Annotated[Optional[str], typer.Option(
        help="the labels' annotator column (default: 'annotator' if there is one, else one annotator)")] = None,
    label_set: Annotated[Optional[str], typer.Option(
        help="the labels, comma-separated (e.g. fail,pass): others are an error; the order is the scale's for "
        "ordinal text, and fail,pass for binary (default: inferred)")] = None,
    scale: Annotated[Optional[str], typer.Option(help="binary, ordinal, continuous or nominal (default: inferred)")
                     ] = None,
    reference: Annotated[Optional[str], typer.Option(help="reference annotator (default: gold, ground_truth, "
                                                     "else the majority)")] = None,
    threshold: Annotated[Optional[float], V._opt(
        "--threshold", "score >= threshold passes, when a score has no label (0 to 1, or the scores' own range; "
        "default 0.5)")] = None,
    strict: Annotated[bool, typer.Option("--strict", metavar="", help="input warnings (unmatched ids, labels in "
                                         "another case, "
                                         "grader labels no annotator used) are errors (exit 2)")] = False,
    repeats: Annotated[int, V._opt("--repeats", "judgements per item (self-consistency)")] = 2,
    adversarial: Annotated[int, V._opt("--adversarial", "known-bad items to probe with each adversarial text")] = 6,
    pairs: Annotated[int, V._opt("--pairs", "better/worse pairs judged in both orders")] = 4,
    limit: Annotated[Optional[int], V._opt("--limit", "judge only the first N items")] = None,
    temperature: Annotated[Optional[float], V._opt("--temperature", "the judge's sampling temperature (default: 0; "
                                                   "0.7 with --repeats > 1)")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API root of the judge")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="env variable holding the judge's API key")] = None,
    boot: Annotated[int, V._opt("--boot", "bootstrap resamples")] = 1000,
    seed: Annotated[int, V._opt("--seed", "seed (bootstrap, judge, probe choice)")] = 0,
    save: Annotated[Optional[Path], typer.Option(help="write the judge's scores here (reuse with --scores)")] = None,
    json_out: Annotated[bool, typer.Option("--json", metavar="", help="machine-readable report on stdout")] = False,
) -> None:
    """Agreement of a grader with labels, or of annotators with each other (no grader): accuracy, kappa,
    Krippendorff's alpha, correlations, probes, with 95% CIs, and the items where the raters disagree."""
    import json

    from rich.progress import Progress

    from ..display import agreement_tables
    from ..quality.agree import agree

    bar: Progress | None = None  # the judge's progress, shown from the moment it starts judging

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(console=console, disable=json_out)
            bar.start()
            bar.add_task(f"judging with {model}", total=total)
        bar.update(bar.task_ids[0], completed=done, total=total)

    try:
        rep = agree(labels, on_progress=on_progress, scores=scores, run=run, judge=judge, model=model, items=items,
                    id_field=id_field, label_field=label_field, annotator_field=annotator_field, label_set=label_set,
                    scale=scale, reference=reference, threshold=threshold, strict=strict, repeats=repeats,
                    adversarial=adversarial, pairs=pairs, limit=limit, temperature=temperature, base_url=base_url,
                    api_key_env=api_key_env, boot=boot, seed=seed, save=save)
    finally:  # also on Ctrl-C
        if bar is not None:
            bar.stop()
    causes = [f"  {c['count']} x {c['cause']}" + (f" (last reply: {c['example']})" if c["example"] else "")
              for c in rep.info.get("judge_error_causes", [])]
    if rep.n_items == 0:  # compare scores no item only when every judgement failed
        if json_out:
            print(json.dumps(rep.to_dict(), indent=2))
        err.print(f"[red]error:[/red] {_escape(rep.warnings[0])}; the commonest causes:", soft_wrap=True)
        for line in causes:
            err.print(_escape(line), soft_wrap=True)
        if save is not None:
            err.print(f"the failed judgements are in {_escape(str(save))}", soft_wrap=True)
        raise typer.Exit(1)
    if json_out:
        print(json.dumps(rep.to_dict(), indent=2))
        return
    for t in agreement_tables(rep, title=f"agree {judge or scores or run or 'annotators'}"):
        console.print(t)
    for note in rep.notes:
        console.print(f"note: {_escape(note)}", soft_wrap=True)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/yellow] {_escape(w)}")
    if causes:
        console.print("the commonest causes of the failed judgements:")
        for line in causes:
            console.print(_escape(line), soft_wrap=True)
