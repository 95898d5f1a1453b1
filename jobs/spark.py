"""The SparkSession the job runs in: local by default, any master by configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

LOG4J = Path(__file__).with_name("log4j2.properties")

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.config import JobConfig


def build_session(config: JobConfig, app_name: str = "nightrec") -> SparkSession:
    """Return a SparkSession for the job (getOrCreate: reuses a running one).

    Python workers run the driver's interpreter unless PYSPARK_PYTHON says otherwise, so the
    venv's packages (TensorFlow, sentence-transformers) are there in local mode.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if config.spark_master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no warning about the hostname
    from pyspark.sql import SparkSession

    cores = os.cpu_count() or 2
    partitions = config.spark_partitions or 2 * cores
    builder = (
        SparkSession.builder.appName(app_name)
        .master(config.spark_master)
        .config("spark.driver.memory", config.spark_driver_memory)
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J}")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if config.verbose else "ERROR")
    return spark
