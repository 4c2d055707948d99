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
    # The decision's cause and the train / evaluation split, in the words the CLI prints.
    data["decision"] = {**data["decision"], "verdict": verdict(evaluation)}
    data["split"] = split_note(evaluation)
    data["slope"] = slope_note(evaluation)
    paths["json"].write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    _ranking_plot(evaluation, paths["ranking"])
    _estimator_plot(evaluation, paths["estimators"])
    paths["html"].write_text(_html(evaluation, data))
    return paths


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


# ---------------------------------------------------------------------- words for people
def split_note(evaluation: Evaluation) -> str:
    """Which rows trained and which evaluated, and what static and learning candidates are."""
    n_rows = evaluation.n_train + evaluation.n_test
    folds = evaluation.info.get("reward_model_folds")
    model = (
        f"; the reward model is cross-fitted in {folds} folds of customers (each row predicted "
        "by a model that saw neither it nor its customer)"
        if evaluation.info.get("reward_model_cross_fitted")
        else ""
    )
    if evaluation.info.get("every_row"):
        return (
            f"scored on every logged row ({evaluation.n_test} decisions): ready-made candidates "
            f"(snapshot:, file:) need no training split{model}"
        )
    share = evaluation.info.get("train_fraction")
    how = f" (--train-fraction {share:g})" if isinstance(share, int | float) else ""
    return (
        f"evaluated on the later {evaluation.n_test} of {n_rows} decisions (by time); the "
        f"earlier {evaluation.n_train}{how} trained the static candidates (then frozen); "
        "learning candidates start untrained and learn while they replay the evaluation "
        f"rows{model}"
    )


def slope_note(evaluation: Evaluation) -> str:
    """Which estimator SLOPE chose for the candidate the verdict is about (the GO candidate, else
    the best-ranked one), with its estimate and interval, next to the primary estimator."""
    decision = evaluation.decision()
    label = decision.get("candidate") or decision.get("refused")
    ranked = [c for c in evaluation.ranking() if c.kind != "baseline"]
    c = next((c for c in ranked if c.label == label), ranked[0] if ranked else None)
    if c is None or "slope" not in c.chosen:
        return "estimator chosen by SLOPE: none (no candidate with finite intervals)"
    low, high = c.interval("slope", evaluation.interval)
    return (
        f"estimator chosen by SLOPE: {c.chosen['slope']} for {c.label}, "
        f"{_fmt(c.value('slope'))} [{_fmt(low)}, {_fmt(high)}] (primary: {evaluation.primary})"
    )


def verdict(evaluation: Evaluation) -> str:
    """The go / no-go line with its cause: what a user needs to act on, in one line.

    A GO, an incomplete run and a candidate the gate refused (:class:`~engine.replay.results.Gate`)
    read as :meth:`Evaluation.decision` says; any other NO-GO names why: no candidate given, too
    little overlap (with the effective sample size), or the best lower bound against the logging
    policy's value.
    """
    decision = evaluation.decision()
    if decision["promote"] or not evaluation.complete or decision.get("refused"):
        # A GO, an incomplete run, or a candidate the gate refused: the decision says why.
        return str(decision["reason"])
    logging_value = evaluation.logging_value
    candidates = [c for c in evaluation.ranking() if c.kind != "baseline"]
    if not candidates:
        return (
            f"NO-GO: no candidate policy was given (--policy), so only the baselines were "
            f"scored; the logging policy's value is {_fmt(logging_value)} ({evaluation.primary})"
        )
    if not math.isfinite(logging_value):
        return (
            f"NO-GO: the logging policy's value could not be estimated on "
            f"{evaluation.n_test} evaluation rows"
        )
    trusted = [c for c in candidates if c.warning is None]
    if not trusted:
        best = candidates[0]
        return (
            f"NO-GO: too little data to judge any candidate on {evaluation.n_test} evaluation "
            f"rows: the best, {best.label}, has {best.warning} (a trustworthy estimate needs "
            "an effective sample size of at least 100)"
        )
    best = trusted[0]
    low, _ = best.interval(evaluation.primary, evaluation.interval)
    return (
        f"NO-GO: the best candidate with trustworthy overlap, {best.label}, has a lower bound "
        f"{_fmt(low)} <= the logging policy's {_fmt(logging_value)} ({evaluation.primary}, "
        f"{evaluation.interval} interval, {1 - evaluation.alpha:.0%})"
    )


def candidate_table(evaluation: Evaluation) -> str:
    """The candidates as a plain-text table, best primary estimate first (what the CLI prints)."""
    headers = ["candidate", "kind", evaluation.primary, "low", "high", "ESS", "support", "note"]
    rows = []
    for c in evaluation.ranking():
        low, high = c.interval(evaluation.primary, evaluation.interval)
        d = c.diagnostics
        note = "" if c.warning is None else c.warning.removeprefix("poor overlap: ")
        rows.append(
            [
                c.label,
                c.kind,
                _fmt(c.value(evaluation.primary)),
                _fmt(low),
                _fmt(high),
                "–" if d is None else f"{d.ess:.0f}",
                "–" if d is None else f"{d.support_share:.0%}",
                note,
            ]
        )
    for c in evaluation.candidates:
        if c.status != "ok":
            rows.append([c.label, c.kind, "failed", "", "", "", "", c.error or ""])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = (False, False, True, True, True, True, True, False)

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    title = (
        f"candidates ({evaluation.primary}, {1 - evaluation.alpha:.0%} {evaluation.interval} "
        "interval; ESS = effective sample size; support = share of logged rows whose offer the "
        "candidate could have chosen)"
    )
    rule = line(["-" * w for w in widths])
    return "\n".join([title, line(headers), rule, *(line(r) for r in rows)])


# ---------------------------------------------------------------------- plots
_LEGEND = {
    "baseline": "baseline (logging, uniform, control)",
    "static": "static candidate",
    "learning": "learning candidate",
}


def _ranking_plot(evaluation: Evaluation, path: Path) -> None:
    from matplotlib.lines import Line2D

    ranked = evaluation.ranking()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ranked) + 2.2))
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
    ax.axvline(evaluation.logging_value, color="#d62728", linestyle="--")
    ax.set_yticks(range(len(ranked)))
    ax.set_yticklabels([c.label for c in reversed(ranked)], fontsize=8)
    ax.set_xlabel(
        f"estimated value per decision ({evaluation.primary}, "
        f"{1 - evaluation.alpha:.0%} {evaluation.interval} interval)"
    )
    title = "Candidates ranked" if evaluation.complete else "INCOMPLETE evaluation"
    ax.set_title(title)
    kinds = {c.kind for c in ranked}
    handles = [
        Line2D([], [], color=_KIND_COLOR[k], marker="o", linestyle="", label=label)
        for k, label in _LEGEND.items()
        if k in kinds
    ]
    if decision["candidate"] is not None:
        handles.append(Line2D([], [], color="#2ca02c", marker="o", linestyle="", label="GO"))
    handles.append(Line2D([], [], color="#d62728", linestyle="--", label="logging policy value"))
    # Below the axes, so it never covers a point.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _estimator_plot(evaluation: Evaluation, path: Path) -> None:
    # Dots with their intervals, not bars: a bar's length claims a distance from 0, and these
    # values sit far from 0 and close to each other; the axis is zoomed onto them and says so.
    ranked = evaluation.ranking()[:12]
    names: list[str] = []
    for c in ranked:
        names.extend(n for n in c.estimates if n not in names)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(ranked) + 2.4))
    step = 0.8 / max(len(names), 1)
    tab10 = plt.get_cmap("tab10")
    palette = [tab10(i) for i in (0, 1, 2, 4, 5, 6, 8, 9, 7)]  # no red: that is the logging line

    def colors(j: int) -> object:
        return palette[j % len(palette)]

    for j, name in enumerate(names):
        for y, c in enumerate(reversed(ranked)):
            value = c.value(name)
            if not math.isfinite(value):
                continue
            low, high = c.interval(name, evaluation.interval)
            yj = y - 0.4 + (j + 0.5) * step
            label = name if y == 0 else None
            if math.isfinite(low) and math.isfinite(high):
                ax.errorbar(
                    value,
                    yj,
                    xerr=[[value - low], [high - value]],
                    fmt="o",
                    markersize=3,
                    color=colors(j),
                    elinewidth=1,
                    label=label,
                )
            else:
                ax.plot(value, yj, "o", markersize=3, color=colors(j), label=label)
    ax.axvline(
        evaluation.logging_value, color="#d62728", linestyle="--", label="logging policy value"
    )
    ax.set_yticks(range(len(ranked)))
    ax.set_yticklabels([c.label for c in reversed(ranked)], fontsize=8)
    ax.set_xlabel(
        "estimated value per decision, by estimator, with its "
        f"{1 - evaluation.alpha:.0%} {evaluation.interval} interval\n"
        "(axis zoomed onto the estimates: it does not start at 0)"
    )
    ax.set_title("Every estimator, per candidate")
    ax.legend(
        fontsize=7, ncol=min(len(names) + 1, 4), loc="upper center", bbox_to_anchor=(0.5, -0.16)
    )
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


_SETTINGS = (
    ("source", "logged data"),
    ("n_rows", "decisions read (closed)"),
    ("n_pending", "pending decisions dropped"),
    ("n_train", "training rows (earlier)"),
    ("n_test", "evaluation rows (later)"),
    ("train_fraction", "train fraction"),
    ("actions", "offers"),
    ("n_features", "features"),
    ("uniform_logging", "logging policy uniform"),
    ("estimators", "estimators"),
    ("primary_estimator", "primary estimator"),
    ("interval", "interval"),
    ("confidence", "confidence"),
    ("n_bootstrap", "bootstrap resamples"),
    ("clip", "weight clipping"),
    ("reward_model", "reward model fitted"),
    ("n_shards", "shards"),
    ("shard_rows", "rows per shard"),
    ("mode", "ran"),
    ("seed", "seed"),
)


def _setting(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


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
    settings = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(_setting(data.get(key)))}</td></tr>"
        for key, label in _SETTINGS
        if key in data
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nbo off-policy evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
.verdict{{font-size:1.3em;font-weight:bold;color:{verdict_color}}}</style></head><body>
<h1>Off-policy evaluation ({status})</h1>
<p class="verdict">{html.escape(verdict(evaluation))}</p>
<p>Logging policy value: {_fmt(evaluation.logging_value)} ({evaluation.primary}).
Promote only when a candidate's lower bound beats it and its overlap is trustworthy
(effective sample size at least 100).</p>
<h2>What was evaluated</h2>
<p>The log is split in time: {html.escape(split_note(evaluation))}.</p>
<ul>
<li><b>static</b> candidates are trained once on the earlier rows and frozen, then scored by
every estimator on the later rows: what the policy would earn if promoted as trained.</li>
<li><b>learning</b> candidates start untrained and learn from the later rows as they are replayed
(they learn only from rows where their choice matches the logged offer): what the policy would
earn if it went live and kept learning.</li>
<li><b>baselines</b>: the logging policy (what the logs earned), uniform random, and the control
offer when known.</li>
</ul>
<h2>Settings</h2>
<table>{settings}</table>
{"<h2>Failed tasks</h2><ul>" + failures + "</ul>" if failures else ""}
<img src="ranking.png" alt="ranking"><img src="estimators.png" alt="estimators">
<h2>Candidates</h2>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr>
{rows}</table>
<p>Full numbers: <a href="evaluation.json">evaluation.json</a>.</p>
</body></html>
"""
