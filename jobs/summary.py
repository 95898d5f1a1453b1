"""The one-screen summary `nightrec run` prints at the end."""

from __future__ import annotations

from jobs.config import JobConfig
from schemas.manifest import RunManifest


def summary(manifest: RunManifest, config: JobConfig) -> str:
    """Return the end-of-run summary: outcome, counts, quality, stage times, where things are."""
    counts, rejected, quality = manifest.counts, manifest.rejected, manifest.quality
    total = sum(s["seconds"] for s in manifest.stages)
    lines = [
        "",
        f"run {manifest.run_id}: {manifest.status}"
        + (f" as version {manifest.version}" if manifest.version else ""),
        f"  input      {rejected.get('interactions_read', '?')} interactions, "
        f"{rejected.get('items_read', '?')} items; quarantined "
        f"{rejected.get('interactions_rejected', 0)} + {rejected.get('items_rejected', 0)}, "
        f"duplicates collapsed {rejected.get('duplicates_collapsed', 0)}",
        f"  model      {counts.get('users', '?')} users x {counts.get('items', '?')} items; "
        f"embeddings {counts.get('items_encoded', '?')} encoded, "
        f"{counts.get('items_reused', '?')} reused",
    ]
    if quality:
        k, ours, best = quality["k"], quality["model"], quality.get("best_baseline")
        versus = f" (best baseline {best['name']} {best['ndcg']:.4f})" if best else ""
        lines.append(
            f"  quality    ndcg@{k} {ours['ndcg']:.4f}{versus}, recall@{k} {ours['recall']:.4f}"
        )
    lines.append(
        f"  outputs    {counts.get('recommendations', '?')} recommendations, "
        f"{counts.get('similar_items', '?')} similar-item rows under {config.out}/runs/"
        f"{manifest.run_id}/"
    )
    if manifest.version:
        lines.append(
            f"  redis      {manifest.params.get('redis_url')} prefix {config.redis_prefix}"
        )
    timing = ", ".join(f"{s['stage']} {s['seconds']:.1f}s" for s in manifest.stages)
    lines.append(f"  seconds    {total:.1f} in stages: {timing}")
    return "\n".join(lines)
