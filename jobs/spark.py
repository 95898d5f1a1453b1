"""The SparkSession the job runs in: local by default, any master by configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

LOG4J = Path(__file__).with_name("log4j2.properties")
# What the JVM itself prints at start, not Spark's log: Spark's launcher always adds the
# incubator module jdk.incubator.vector, and the JVM warns about it on stderr.
JVM_NOTICES = (b"WARNING: Using incubator modules:",)
ARCHIVE_SETTLE_S = 30  # the JVM writes its class archive after the Python process has gone

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.config import JobConfig


def class_archive(cache_dir: Path) -> str:
    """Return the JVM flags that share Spark's loaded classes between local runs (AppCDS).

    The first run records the classes it loaded into a per-process file at JVM exit; a later
    run adopts a finished record and maps it, which roughly halves the JVM's start-up and the
    first Spark jobs' warm-up. A record that does not fit the JVM is ignored by the JVM.
    """
    import pyspark

    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"spark-{pyspark.__version__}.jsa"
    recording = False
    for partial in cache_dir.glob(f"{final.name}.*"):
        pid = int(partial.suffix[1:]) if partial.suffix[1:].isdigit() else 0
        settled = time.time() - partial.stat().st_mtime > ARCHIVE_SETTLE_S
        if _alive(pid) or not settled:  # its JVM may still be writing it
            recording = True
        elif final.exists():
            partial.unlink()
        else:
            os.replace(partial, final)
    quiet = "-Xlog:disable -Xlog:all=error:stderr"
    if final.exists():
        return f"-XX:SharedArchiveFile={final} {quiet}"
    if recording:
        return ""
    return f"-XX:ArchiveClassesAtExit={final}.{os.getpid()} {quiet}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def java_options(config: JobConfig) -> str:
    """Return the driver JVM's options: quiet logging, and the class archive in local mode."""
    options = f"-Dlog4j2.configurationFile={LOG4J}"
    if config.spark_class_cache and config.spark_master.startswith("local"):
        options = f"{options} {class_archive(Path(config.spark_class_cache).expanduser())}"
    return options.strip()


def submitted() -> bool:
    """Return True when this process was started by spark-submit (its JVM is already up).

    spark-submit's PythonRunner hands the Python process its gateway's port in this variable;
    the job then keeps the master and settings given to spark-submit instead of its own.
    """
    return "PYSPARK_GATEWAY_PORT" in os.environ


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

    if submitted():  # spark-submit's master, memory and properties stand
        spark = SparkSession.builder.appName(app_name).getOrCreate()
        spark.sparkContext.setLogLevel("INFO" if config.verbose else "ERROR")
        return spark
    cores = os.cpu_count() or 2
    settings = {
        "spark.app.name": app_name,
        "spark.master": config.spark_master,
        "spark.driver.memory": config.spark_driver_memory,
        "spark.sql.shuffle.partitions": str(config.spark_partitions or 2 * cores),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
        "spark.driver.extraJavaOptions": java_options(config),
    }
    _start_driver(settings)
    spark = SparkSession.builder.config(map=settings).getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if config.verbose else "ERROR")
    return spark


def _start_driver(settings: dict[str, str]) -> None:
    """Start the driver JVM (unless one runs) with its stderr filtered of JVM_NOTICES.

    pyspark's `launch_gateway` takes Popen arguments for this ("e.g., capturing stdout/stderr");
    everything else the JVM writes to stderr (Spark's errors) passes through unchanged.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return  # a JVM of this process is up: getOrCreate uses it
    conf = SparkConf().setAll(list(settings.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(
        target=_forward_stderr, args=(gateway.proc.stderr,), name="jvm-stderr", daemon=True
    ).start()
    SparkContext(conf=conf, gateway=gateway)


def _forward_stderr(stream: IO[bytes]) -> None:
    """Copy the JVM's stderr to this process's, line by line, without JVM_NOTICES."""
    for line in iter(stream.readline, b""):
        if not line.startswith(JVM_NOTICES):
            view = memoryview(line)
            while view:
                view = view[os.write(2, view) :]
