"""Stage `evaluate`: the model's quality on a temporal holdout, beside the popularity list.

Per user the last `eval_holdout` interactions are held out; a model trained on the rest
ranks the full catalogue (training items masked) and so does the popularity list. Relevant
items are held-out ones rated at least `eval_min_rating`. The figures go to the manifest.
"""

from __future__ import annotations

from jobs.context import Context, Stage, StageResult
from jobs.evaluate import evaluate_model, holdout_split, popularity_factors, relevant_csr
from jobs.topn import seen_csr
from jobs.train_cf import Interactions, fit, load_interactions
from schemas.tables import INTERACTIONS, ITEMS


def holdout_quality(data: Interactions, ctx: Context) -> dict:
    """Train on the earlier interactions; return metrics of the model and of popularity."""
    config = ctx.config
    test = holdout_split(data.user_idx, data.timestamp, config.eval_holdout)
    train = ~test
    model = fit(ctx, data, train)
    seen = seen_csr(data.user_idx[train], data.item_idx[train], data.n_users)
    relevant = relevant_csr(
        data.user_idx[test],
        data.item_idx[test],
        data.rating[test],
        data.n_users,
        config.eval_min_rating,
    )
    k = config.eval_k
    ours = evaluate_model(model.user_factors, model.item_factors, seen, relevant, k)
    pop_users, pop_items = popularity_factors(data.item_idx[train], data.n_users, data.n_items)
    popular = evaluate_model(pop_users, pop_items, seen, relevant, k)
    return {
        "protocol": f"last {config.eval_holdout} per user held out, relevant rating >= "
        f"{config.eval_min_rating}, full catalogue, training items masked",
        "k": k,
        "held_out": int(test.sum()),
        "model": ours,
        "popularity": popular,
        "beats_popularity": bool(ours["ndcg"] > popular["ndcg"]),
    }


def run(ctx: Context) -> StageResult:
    """Measure held-out quality and record it in the manifest."""
    if ctx.config.eval_holdout <= 0:
        return StageResult(0, "skipped (NIGHTREC_EVAL_HOLDOUT=0)")
    data = load_interactions(ctx)
    quality = holdout_quality(data, ctx)
    ctx.manifest.quality = quality
    k, ours, popular = quality["k"], quality["model"], quality["popularity"]
    return StageResult(
        int(quality["held_out"]),
        f"ndcg@{k} {ours['ndcg']:.4f} vs popularity {popular['ndcg']:.4f}, "
        f"recall@{k} {ours['recall']:.4f} vs {popular['recall']:.4f} "
        f"({ours['users']} users)",
    )


STAGE = Stage("evaluate", (INTERACTIONS, ITEMS), (), run)
