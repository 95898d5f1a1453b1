"""Stage `evaluate`: the model's quality on a temporal holdout, beside the baselines.

Per user the last `eval_holdout` interactions are held out; a model trained on the rest
ranks the full catalogue (training items masked) and so does each baseline the
`eval_baselines` setting names (popularity by default: the others cost seconds to minutes and
belong to `nightrec eval`). Relevant items are held-out ones rated at least
`eval_min_rating`. The figures go to the manifest's `quality`, which the publish stage's gate
compares with the published version's.
"""

from __future__ import annotations

import numpy as np

from jobs.context import Context, Stage, StageResult
from jobs.eval_suite import MODEL, best_baseline, make_split, run_suite
from jobs.train_cf import Interactions, fit, load_interactions, load_item_text
from schemas.tables import INTERACTIONS, ITEM_EMBEDDINGS, ITEMS


def holdout_quality(data: Interactions, ctx: Context, embeddings: np.ndarray | None) -> dict:
    """Train on the earlier interactions; return the metrics of the model and the baselines."""
    config = ctx.config
    split = make_split(data, config.eval_holdout, config.eval_min_rating)
    k = config.eval_k
    suite = run_suite(
        data,
        split,
        k,
        config.eval_min_rating,
        lambda rows: fit(ctx, data, rows),
        config.eval_baselines,
        spark=ctx.spark,
        embeddings=embeddings,
    )
    results = suite.pop("results")
    ours = results.pop(MODEL)
    best = best_baseline(results)
    return {
        "protocol": f"last {config.eval_holdout} per user held out, relevant rating >= "
        f"{config.eval_min_rating}, full catalogue, training items masked",
        "k": k,
        "held_out": len(split.test),
        "model": ours,
        "baselines": results,
        "popularity": results.get("popularity", {}),
        "best_baseline": {"name": best[0], "ndcg": best[1]} if best else None,
        "beats_popularity": bool(
            "popularity" in results and ours["ndcg"] > results["popularity"]["ndcg"]
        ),
        **suite,
    }


def run(ctx: Context) -> StageResult:
    """Measure held-out quality and record it in the manifest."""
    if ctx.config.eval_holdout <= 0:
        return StageResult(0, "skipped (NIGHTREC_EVAL_HOLDOUT=0)")
    data = load_interactions(ctx)
    quality = holdout_quality(data, ctx, load_item_text(ctx, data))
    ctx.manifest.quality = quality
    k, ours, best = quality["k"], quality["model"], quality["best_baseline"]
    versus = f" vs {best['name']} {best['ndcg']:.4f}" if best else ""
    return StageResult(
        int(quality["held_out"]),
        f"ndcg@{k} {ours['ndcg']:.4f}{versus}, recall@{k} {ours['recall']:.4f} "
        f"({ours['users']} users)",
    )


STAGE = Stage("evaluate", (INTERACTIONS, ITEMS, ITEM_EMBEDDINGS), (), run)
