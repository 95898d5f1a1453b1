"""The quality table `nightrec eval` prints: our model and every baseline, one row each."""

from __future__ import annotations

COLUMNS = (
    ("ndcg", "ndcg"),
    ("recall", "recall"),
    ("map", "map"),
    ("precision", "prec"),
    ("coverage", "coverage"),
    ("novelty", "novelty"),
    ("diversity", "diversity"),
)
OURS = "ours (keras)"


def quality_rows(quality: dict) -> list[tuple[str, dict, float | None]]:
    """Return (name, metrics, seconds) for our model, then the baselines best NDCG first."""
    seconds = quality.get("seconds", {})
    baselines = sorted(quality.get("baselines", {}).items(), key=lambda kv: -kv[1]["ndcg"])
    rows = [(OURS, quality["model"], seconds.get("model"))]
    return rows + [(name, metrics, seconds.get(name)) for name, metrics in baselines]


def format_quality(quality: dict) -> str:
    """Return the table and the closing `quality:` line.

    The last line reads exactly `quality: ndcg@K=X best_baseline=NAME:Y ease=Z`, with "n/a"
    for a baseline that did not run.
    """
    if not quality:
        return "quality: not measured (the evaluate stage was skipped: NIGHTREC_EVAL_HOLDOUT=0)"
    k = quality["k"]
    header = f"{'model':<14}" + "".join(
        f"{f'{label}@{k}' if i < 4 else label:>12}" for i, (_, label) in enumerate(COLUMNS)
    )
    lines = [quality.get("protocol", ""), header + f"{'seconds':>9}"]
    for name, metrics, seconds in quality_rows(quality):
        cells = "".join(f"{metrics.get(key, float('nan')):>12.4f}" for key, _ in COLUMNS)
        lines.append(f"{name:<14}{cells}{_seconds(seconds):>9}")
    lines.append(quality_line(quality))
    return "\n".join(lines)


def quality_line(quality: dict) -> str:
    """Return `quality: ndcg@K=X best_baseline=NAME:Y ease=Z`."""
    k, baselines = quality["k"], quality.get("baselines", {})
    best = quality.get("best_baseline")
    best_text = f"{best['name']}:{best['ndcg']:.4f}" if best else "n/a"
    ease = f"{baselines['ease']['ndcg']:.4f}" if "ease" in baselines else "n/a"
    return f"quality: ndcg@{k}={quality['model']['ndcg']:.4f} best_baseline={best_text} ease={ease}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
