"""`nightrec report`: one self-contained HTML page per run and an index over the runs.

Everything comes from the runs' manifests (OUT/runs/*/manifest.json): the quality table
against the baselines, metrics over past runs, the score distribution of our model's lists,
their coverage by popularity decile, and seconds per stage. Plots are matplotlib (Agg) PNGs
inlined as base64, so a page opens anywhere without fetching anything.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from jobs.quality_table import COLUMNS, quality_line, quality_rows
from schemas.manifest import RUN_MANIFEST, ManifestError, RunManifest

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;"
    "text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}"
)


def load_runs(out: str | Path) -> list[RunManifest]:
    """Return the readable run manifests under OUT/runs, oldest first."""
    runs = []
    for path in sorted(Path(out, "runs").glob(f"*/{RUN_MANIFEST}")):
        try:
            runs.append(RunManifest.from_json(path.read_text()))
        except (OSError, ManifestError):
            continue  # a run being written or a damaged record: left out of the report
    return sorted(runs, key=lambda m: (m.started_at, m.run_id))


def write_report(out: str | Path, dest: str | Path | None = None) -> list[Path]:
    """Write a page per run and index.html; return their paths, the index last."""
    target = Path(dest) if dest else Path(out, "report")
    target.mkdir(parents=True, exist_ok=True)
    runs = load_runs(out)
    paths = []
    for number, manifest in enumerate(runs):
        path = target / f"{manifest.run_id}.html"
        path.write_text(run_page(manifest, runs[: number + 1]))
        paths.append(path)
    index = target / "index.html"
    index.write_text(index_page(runs))
    return [*paths, index]


def run_page(manifest: RunManifest, history: list[RunManifest]) -> str:
    """Return the HTML page of one run; `history` is the runs up to it, oldest first."""
    from jobs import report_plots as plots

    quality = manifest.quality
    parts = [f"<h1>Run {html.escape(manifest.run_id)}</h1>", _status(manifest)]
    if quality:
        parts += [
            f"<p>{html.escape(quality.get('protocol', ''))}</p>",
            metrics_table(quality),
            f"<p><code>{html.escape(quality_line(quality))}</code></p>",
        ]
    figures = (
        ("Metrics over runs", plots.history_plot(history)),
        ("Score distribution (our model's top-K lists)", plots.score_plot(quality)),
        ("Coverage by popularity decile", plots.decile_plot(quality)),
        ("Seconds per stage", plots.stage_plot(manifest.stages)),
    )
    for title, png in figures:
        if png is not None:
            parts.append(f"<h2>{title}</h2>{_img(png)}")
    return _page(f"nightrec run {manifest.run_id}", "\n".join(parts))


def metrics_table(quality: dict) -> str:
    """Return the HTML table of our model and the baselines."""
    k = quality["k"]
    head = "".join(
        f"<th>{label}{f'@{k}' if i < 4 else ''}</th>" for i, (_, label) in enumerate(COLUMNS)
    )
    rows = []
    for name, metrics, seconds in quality_rows(quality):
        cells = "".join(f"<td>{metrics.get(key, float('nan')):.4f}</td>" for key, _ in COLUMNS)
        secs = "" if seconds is None else f"{seconds:.1f}"
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}<td>{secs}</td></tr>")
    return f"<table><tr><th>model</th>{head}<th>seconds</th></tr>{''.join(rows)}</table>"


def index_page(runs: list[RunManifest]) -> str:
    """Return the index: one row per run, newest first, linking to its page."""
    rows = []
    for m in reversed(runs):
        ndcg = m.quality.get("model", {}).get("ndcg") if m.quality else None
        best = (m.quality or {}).get("best_baseline") or {}
        rows.append(
            f'<tr><td><a href="{html.escape(m.run_id)}.html">{html.escape(m.run_id)}</a></td>'
            f"<td>{html.escape(m.status)}</td><td>{html.escape(str(m.version or ''))}</td>"
            f"<td>{'' if ndcg is None else f'{ndcg:.4f}'}</td>"
            f"<td>{html.escape(str(best.get('name', '')))}</td>"
            f"<td>{html.escape(m.reason or '')}</td></tr>"
        )
    table = (
        "<table><tr><th>run</th><th>status</th><th>version</th><th>ndcg</th>"
        f"<th>best baseline</th><th>reason</th></tr>{''.join(rows)}</table>"
    )
    return _page("nightrec runs", f"<h1>nightrec runs</h1>{table}")


def png_bytes(figure) -> bytes:
    """Return a matplotlib figure as PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _status(manifest: RunManifest) -> str:
    text = f"status {manifest.status}" + (
        f", version {manifest.version}" if manifest.version else ""
    )
    if manifest.reason:
        text += f": {manifest.reason}"
    return f"<p>{html.escape(text)}</p>"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
