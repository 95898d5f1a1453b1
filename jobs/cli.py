"""The `nightrec` command: parse, build the config, run, exit non-zero on failure.

    nightrec run [--data DIR | --interactions URI --items URI] [--out DIR] [--redis-url URL]
                 [--top-n N] [--run-id ID] [--stages LIST] [--config FILE]
    nightrec eval [--data DIR | --interactions URI --items URI] [--out DIR]
                  [--baselines LIST] [--run-id ID] [--config FILE]
    nightrec report [--out DIR] [--dest DIR]
    nightrec versions [--out DIR] [--redis-url URL] [--config FILE] [--json]
    nightrec rollback VERSION [--out DIR] [--redis-url URL] [--config FILE]
    nightrec serve [--out DIR] [--redis-url URL] [--host HOST] [--port PORT]
                   [--workers W] [--threads T]

Heavy imports (pyspark, TensorFlow) happen only once a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

# Library noise that no user asked for; set before TensorFlow or the hub client is imported.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nightrec", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the nightly job (ingest ... publish)")
    _add_input_arguments(run)
    run.add_argument(
        "--redis-url",
        dest="redis_url",
        help="redis:// or rediss:// URL (default: a private redis-server)",
    )
    run.add_argument("--top-n", dest="top_n", help="items per user (default 100)")
    run.add_argument("--run-id", dest="run_id", help="run id (default: UTC start time)")
    run.add_argument("--stages", help="comma-separated subset of stages, in order")
    run.add_argument("--spark-master", dest="spark_master", help="Spark master (local[*])")
    run.add_argument("--config", help="TOML file of settings (see README)")
    run.add_argument(
        "--force-publish",
        dest="force_publish",
        action="store_const",
        const="true",
        help="publish even when the quality gate refuses the run",
    )
    _add_eval_parser(commands)
    report = commands.add_parser("report", help="write the HTML quality report over runs")
    report.add_argument("--out", default="var", help="artefact directory (default ./var)")
    report.add_argument("--dest", help="where the pages go (default OUT/report)")
    _add_version_parsers(commands)
    serve = commands.add_parser("serve", help="serve the API (gunicorn) from Redis and --out")
    from serving.cli import add_arguments  # light: the app itself is imported by the workers

    add_arguments(serve)
    return parser


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("input (default: the bundled MovieLens sample)")
    source.add_argument("--data", help="MovieLens-layout directory (ratings.csv, movies.csv)")
    source.add_argument("--interactions", help="interactions CSV/Parquet (path or URI)")
    source.add_argument("--items", help="item catalogue CSV/Parquet (path or URI)")
    parser.add_argument("--out", help="artefact directory (default ./var)")


def _add_eval_parser(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate our model and every baseline on a temporal holdout"
    )
    _add_input_arguments(evaluate)
    evaluate.add_argument(
        "--baselines", dest="eval_baselines", help="comma-separated baselines (default: all)"
    )
    evaluate.add_argument("--run-id", dest="run_id", help="run id (default: UTC start time)")
    evaluate.add_argument("--spark-master", dest="spark_master", help="Spark master (local[*])")
    evaluate.add_argument("--config", help="TOML file of settings (see README)")


def _add_version_parsers(commands) -> None:
    listing = commands.add_parser("versions", help="list the published versions and metrics")
    back = commands.add_parser("rollback", help="make an earlier published version current")
    back.add_argument("version", help="a version listed by `nightrec versions`")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for parser in (listing, back):
        parser.add_argument("--out", help="artefact directory (default ./var)")
        parser.add_argument(
            "--redis-url", dest="redis_url", help="Redis URL (default: the private server)"
        )
        parser.add_argument("--config", help="TOML file of settings (see README)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if args.command in ("run", "eval"):
        return _run(args)
    if args.command == "report":
        from jobs.report import write_report

        paths = write_report(args.out, args.dest)
        print(f"wrote {len(paths) - 1} run pages and {paths[-1]}")
        return 0
    if args.command in ("versions", "rollback"):
        return _versions(args)
    if args.command == "serve":
        from serving.cli import serve_main

        rest = list(sys.argv[1:] if argv is None else argv)
        return serve_main(rest[rest.index("serve") + 1 :])
    return 2


def _run(args: argparse.Namespace) -> int:
    from jobs.config import build_config
    from jobs.errors import JobError

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    if args.command == "eval":
        # Evaluation stops before training for serving; every baseline unless told otherwise.
        flags["stages"] = "ingest,embed_items,evaluate"
        if flags.get("eval_baselines") is None:
            flags["eval_baselines"] = "popularity,item_knn,implicit_als,spark_als,ease"
    try:
        config = build_config(flags, os.environ, args.config)
    except JobError as exc:
        print(f"nightrec: {exc}", file=sys.stderr)
        return 2
    if config.run_id is None:  # one id for the logs, the manifest and the version
        from jobs.run_store import new_run_id

        config = replace(config, run_id=new_run_id())
    spark = _start_spark(config)
    from jobs.observe import export_metrics, run_line, setup_logging
    from jobs.pipeline import RunFailed, run_job  # TensorFlow and ScaNN load while Spark starts
    from jobs.summary import summary

    setup_logging(config)
    try:
        manifest = run_job(config, spark=spark)
    except RunFailed as exc:
        export_metrics(exc.manifest, config)
        if config.log_format == "json":
            print(run_line(exc.manifest))
        print(f"nightrec: run {exc.manifest.run_id} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nightrec: interrupted; nothing was published", file=sys.stderr)
        return 130
    export_metrics(manifest, config)
    if args.command == "eval":
        from jobs.quality_table import format_quality

        print(format_quality(manifest.quality))
        return 0
    print(run_line(manifest) if config.log_format == "json" else summary(manifest, config))
    return 0


def _versions(args: argparse.Namespace) -> int:
    """List the published versions, or roll the pointer back to one of them."""
    import redis
    from redis.exceptions import RedisClusterException

    from jobs.config import build_config
    from jobs.errors import JobError
    from jobs.versions import format_versions, list_versions, rollback, versions_json
    from schemas.redis_layout import Keys

    flags = {"out": args.out, "redis_url": args.redis_url}
    try:
        config = build_config(flags, os.environ, args.config)
        client = _version_client(config)
        keys = Keys(config.redis_prefix)
        if args.command == "versions":
            infos = list_versions(client, keys)
            print(versions_json(infos) if args.json else format_versions(infos))
            return 0
        previous = rollback(client, keys, args.version)
    except JobError as exc:
        print(f"nightrec: {exc}", file=sys.stderr)
        return 2 if args.command == "versions" else 1
    except (redis.RedisError, RedisClusterException) as exc:
        print(f"nightrec: Redis failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    print(f"current version: {previous or 'none'} -> {args.version}")
    return 0


def _version_client(config):
    """Return a client of the configured Redis, or of the private server under --out."""
    from pathlib import Path

    from jobs.storage import is_local, local_path
    from serving.local_redis import LocalRedisError, ensure_local_redis
    from serving.redis_client import connect

    url = config.redis_url
    if not url:
        if not is_local(config.out):
            from jobs.errors import ConfigError

            raise ConfigError(
                f"no private redis-server for a remote --out {config.out}: give "
                "--redis-url (or NIGHTREC_REDIS_URL)"
            )
        try:
            url = ensure_local_redis(Path(local_path(config.out)))
        except LocalRedisError as exc:
            from jobs.errors import ConfigError

            raise ConfigError(str(exc)) from None
    return connect(url, cluster=config.redis_cluster, timeout=30, connect_timeout=5)


def _start_spark(config) -> Future:
    """Start the SparkSession in a thread: the JVM boots while the main thread imports."""
    from jobs.spark import build_session

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
    future = pool.submit(build_session, config)
    pool.shutdown(wait=False)
    return future


if __name__ == "__main__":
    sys.exit(main())
