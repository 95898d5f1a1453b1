"""The report's plots, each returned as PNG bytes (or None when there is nothing to draw)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on a batch machine; must precede pyplot's import

import matplotlib.pyplot as plt  # noqa: E402

from jobs.report import png_bytes  # noqa: E402
from schemas.manifest import RunManifest  # noqa: E402

SIZE = (7, 3)


def history_plot(runs: list[RunManifest]) -> bytes | None:
    """Plot NDCG, recall and MAP of our model and the best baseline's NDCG over the runs."""
    measured = [m for m in runs if m.quality.get("model")]
    if not measured:
        return None
    figure, axes = plt.subplots(figsize=SIZE)
    labels = [m.run_id for m in measured]
    for metric in ("ndcg", "recall", "map"):
        axes.plot(labels, [m.quality["model"][metric] for m in measured], marker="o", label=metric)
    best = [(m.quality.get("best_baseline") or {}).get("ndcg") for m in measured]
    if any(value is not None for value in best):
        values = [float("nan") if v is None else v for v in best]
        axes.plot(labels, values, linestyle="--", marker="x", label="best baseline ndcg")
    axes.set_ylabel(f"@{measured[-1].quality['k']}")
    axes.legend(fontsize="small")
    axes.tick_params(axis="x", labelrotation=30, labelsize="small")
    return png_bytes(figure)


def score_plot(quality: dict) -> bytes | None:
    """Plot the histogram of our model's top-K scores."""
    histogram = quality.get("score_histogram") if quality else None
    if not histogram or not histogram.get("counts"):
        return None
    edges, counts = histogram["edges"], histogram["counts"]
    figure, axes = plt.subplots(figsize=SIZE)
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    axes.bar(edges[:-1], counts, width=widths, align="edge")
    axes.set_xlabel("score")
    axes.set_ylabel("listed items")
    return png_bytes(figure)


def decile_plot(quality: dict) -> bytes | None:
    """Plot the share of each popularity decile's items that reach some list."""
    deciles = quality.get("coverage_by_decile") if quality else None
    if not deciles:
        return None
    figure, axes = plt.subplots(figsize=SIZE)
    axes.bar(range(1, len(deciles) + 1), deciles)
    axes.set_xlabel("popularity decile (1 = least popular)")
    axes.set_ylabel("share of items listed")
    return png_bytes(figure)


def stage_plot(stages: list[dict]) -> bytes | None:
    """Plot seconds per stage as horizontal bars."""
    if not stages:
        return None
    figure, axes = plt.subplots(figsize=SIZE)
    names = [s["stage"] for s in stages][::-1]
    axes.barh(names, [s["seconds"] for s in stages][::-1])
    axes.set_xlabel("seconds")
    return png_bytes(figure)
