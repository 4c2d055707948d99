"""The evaluation report: ``evaluation.json``, ``report.html`` and its PNG plots.

The HTML page opens with the go / no-go line, then ranks candidates by the primary estimate with
its interval against the logging policy's value, then lists every estimator and the overlap
diagnostics. An incomplete evaluation says so in the title and never shows "GO".
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use

from engine.replay.results import CandidateResult, Evaluation

_KIND_COLOR = {"baseline": "#888888", "static": "#1f77b4", "learning": "#9467bd"}


def write_report(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write the JSON, the HTML page and the plots into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "evaluation.json",
        "html": out / "report.html",
        "ranking": out / "ranking.png",
        "estimators": out / "estimators.png",
    }
    data = evaluation.to_dict()
    paths["json"].write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    _ranking_plot(evaluation, paths["ranking"])
    _estimator_plot(evaluation, paths["estimators"])
    paths["html"].write_text(_html(evaluation, data))
    return paths


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _ranking_plot(evaluation: Evaluation, path: Path) -> None:
    ranked = evaluation.ranking()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ranked) + 1.6))
    decision = evaluation.decision()
    for y, c in enumerate(reversed(ranked)):
        value = c.value(evaluation.primary)
        low, high = c.interval(evaluation.primary, evaluation.interval)
        color = "#2ca02c" if c.label == decision["candidate"] else _KIND_COLOR.get(c.kind, "k")
        if math.isfinite(low) and math.isfinite(high):
            ax.errorbar(
                value, y, xerr=[[value - low], [high - value]], fmt="o", color=color, capsize=3
            )
        else:
            ax.plot(value, y, "o", color=color)
    ax.axvline(evaluation.logging_value, color="#d62728", linestyle="--", label="logging policy")
    ax.set_yticks(range(len(ranked)))
    ax.set_yticklabels([c.label for c in reversed(ranked)], fontsize=8)
    ax.set_xlabel(
        f"estimated value per decision ({evaluation.primary}, "
        f"{1 - evaluation.alpha:.0%} {evaluation.interval} interval)"
    )
    title = "Candidates ranked" if evaluation.complete else "INCOMPLETE evaluation"
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _estimator_plot(evaluation: Evaluation, path: Path) -> None:
    ranked = evaluation.ranking()[:12]
    names: list[str] = []
    for c in ranked:
        names.extend(n for n in c.estimates if n not in names)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ranked) + 1.6))
    height = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        ys = [y - 0.4 + (j + 0.5) * height for y in range(len(ranked))]
        ax.barh(ys, [c.value(name) for c in reversed(ranked)], height=height, label=name)
    ax.axvline(evaluation.logging_value, color="#d62728", linestyle="--")
    ax.set_yticks(range(len(ranked)))
    ax.set_yticklabels([c.label for c in reversed(ranked)], fontsize=8)
    ax.set_xlabel("estimated value per decision, by estimator")
    ax.legend(fontsize=7, ncol=min(len(names), 4), loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(c: CandidateResult, evaluation: Evaluation, names: list[str]) -> str:
    low, high = c.interval(evaluation.primary, evaluation.interval)
    d = c.diagnostics
    lift = c.lift.get(evaluation.primary)
    lift_cell = "–"
    if lift is not None:
        lift_cell = f"{_fmt(lift.value)} [{_fmt(lift.bootstrap[0])}, {_fmt(lift.bootstrap[1])}]"
    cells = [
        html.escape(c.label),
        c.kind,
        _fmt(c.value(evaluation.primary)),
        f"[{_fmt(low)}, {_fmt(high)}]",
        lift_cell,
        *(_fmt(c.value(n)) for n in names),
        "–" if d is None else f"{d.ess:.0f}",
        "–" if d is None else _fmt(d.min_propensity, 3),
        "–" if d is None else f"{d.support_share:.1%}",
        html.escape(c.warning or ""),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _html(evaluation: Evaluation, data: dict[str, object]) -> str:
    decision = evaluation.decision()
    ranked = evaluation.ranking()
    names: list[str] = []
    for c in ranked:
        names.extend(n for n in c.estimates if n not in names)
    header = ["candidate", "kind", evaluation.primary, "interval", "lift vs logging", *names]
    header += ["ESS", "min propensity", "support", "warning"]
    rows = "\n".join(_row(c, evaluation, names) for c in ranked)
    failed = [c for c in evaluation.candidates if c.status != "ok"]
    failures = "".join(
        f"<li>{html.escape(c.label)}: {html.escape(c.error or '')}</li>" for c in failed
    )
    status = "complete" if evaluation.complete else "INCOMPLETE — partial results only"
    verdict_color = "#2ca02c" if decision["promote"] else "#d62728"
    settings = {
        k: data[k]
        for k in ("n_rows", "n_pending", "n_train", "n_test", "n_shards", "mode", "seed")
        if k in data
    }
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nbo off-policy evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
.verdict{{font-size:1.3em;font-weight:bold;color:{verdict_color}}}</style></head><body>
<h1>Off-policy evaluation ({status})</h1>
<p class="verdict">{html.escape(str(decision["reason"]))}</p>
<p>Logging policy value: {_fmt(evaluation.logging_value)} ({evaluation.primary}).
Promote only when a candidate's lower bound beats it and its overlap is trustworthy.</p>
<p>{html.escape(json.dumps(settings))}</p>
{"<h2>Failed tasks</h2><ul>" + failures + "</ul>" if failures else ""}
<img src="ranking.png" alt="ranking"><img src="estimators.png" alt="estimators">
<h2>Candidates</h2>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr>
{rows}</table>
<p>Full numbers: <a href="evaluation.json">evaluation.json</a>.</p>
</body></html>
"""
