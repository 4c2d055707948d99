"""Plots of simulation runs: value per customer, regret against the oracle, lift over control.

Each policy's curve is the mean across seeds with a shaded 95% band (t-interval across seeds;
no band with one seed). Uses matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulators.runner import RunResult


def _band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, np.zeros_like(mean)
    from scipy import stats

    n = curves.shape[0]
    half = stats.t.ppf(0.975, n - 1) * curves.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, half


def plot_runs(results: Sequence[RunResult], path: str | Path, title: str = "") -> Path:
    """Write a three-panel PNG and return its path.

    Panels: cumulative net value as a percentage of the oracle's on the same customers,
    cumulative regret against the oracle, and cumulative lift over control (expected net reward,
    ground truth).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.policy, []).append(r)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax_value, ax_regret, ax_lift = axes
    reference = next(iter(groups.values()))
    for name, runs in groups.items():
        n_points = min(len(r.checkpoints) for r in runs)
        x = np.asarray(runs[0].checkpoints[:n_points], dtype=np.float64)
        value = np.array([r.value[:n_points] for r in runs])
        oracle = np.array([r.oracle[:n_points] for r in runs])
        control = np.array([r.control[:n_points] for r in runs])
        for ax, curves in (
            (ax_value, 100.0 * value / oracle),
            (ax_regret, oracle - value),
            (ax_lift, value - control),
        ):
            mean, half = _band(curves)
            (line,) = ax.plot(x, mean, label=name, lw=1.6)
            if half.any():
                ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    n_points = min(len(r.checkpoints) for r in reference)
    x = np.asarray(reference[0].checkpoints[:n_points], dtype=np.float64)
    oracle = np.array([r.oracle[:n_points] for r in reference])
    control = np.array([r.control[:n_points] for r in reference])
    ax_value.axhline(100.0, color="black", ls="--", lw=1.2, label="oracle")
    if "control" not in groups:
        ax_value.plot(
            x,
            100.0 * np.mean(control / oracle, axis=0),
            color="grey",
            ls=":",
            lw=1.2,
            label="control offer",
        )
    ax_value.set_title("Net value so far, % of the oracle's")
    ax_value.set_ylabel("cumulative net value / oracle's (%)")
    ax_regret.set_title("Cumulative regret against the oracle")
    ax_regret.set_ylabel("expected net reward lost")
    ax_lift.set_title("Cumulative lift over control")
    ax_lift.set_ylabel("expected net reward gained")
    ax_lift.axhline(0.0, color="grey", lw=0.8)
    for ax in axes:
        ax.set_xlabel("customers")
        ax.grid(alpha=0.3)
    ax_value.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
