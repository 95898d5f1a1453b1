"""Where a run's files live: a local directory (a plain path), or any Hadoop filesystem URI
(s3a://, hdfs://, gs://, abfs://, file://) reached through the SparkSession's own Hadoop
FileSystem, so the job needs no credentials or clients beyond Spark's (`spark.hadoop.fs.s3a.*`
and the like).

Parquet tables go through Spark either way; this module moves the driver's own files: the
run manifest, the error log, the ScaNN index directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def is_local(location: str | Path) -> bool:
    """Return True for a plain path; any URI, file:// included, goes through Hadoop."""
    return isinstance(location, Path) or urlparse(str(location)).scheme == ""


def local_path(location: str | Path) -> Path:
    """Return the local path of a plain path."""
    return Path(location)


def join(location: str, *parts: str) -> str:
    """Join URI path parts with '/' (never os.sep, never dropping the scheme's '//')."""
    return "/".join([location.rstrip("/"), *parts])


class HadoopFiles:
    """Files at Hadoop filesystem URIs, through the JVM of a SparkSession."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm: Any = spark._jvm  # type: ignore[attr-defined]
        self._conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _fs(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._fs(uri)
        return bool(fs.exists(path))

    def read_text(self, uri: str) -> str:
        fs, path = self._fs(uri)
        stream = fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_text(self, uri: str, text: str) -> None:
        """Write a file whole: a temporary name, then a rename (atomic on HDFS; object
        stores copy, but a reader still never sees half a file)."""
        fs, path = self._fs(uri)
        tmp = self._jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.tmp")
        stream = fs.create(tmp, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        if fs.exists(path):
            fs.delete(path, False)  # HDFS's rename does not replace
        if not fs.rename(tmp, path):
            raise OSError(f"could not rename {tmp.toString()} to {uri}")

    def glob(self, pattern: str) -> list[str]:
        """Return the URIs matching a glob pattern, sorted."""
        fs, path = self._fs(pattern)
        found = fs.globStatus(path) or []
        return sorted(str(status.getPath().toString()) for status in found)

    def delete(self, uri: str) -> None:
        """Delete a file or a directory with everything under it (nothing when absent)."""
        fs, path = self._fs(uri)
        if fs.exists(path) and not fs.delete(path, True):
            raise OSError(f"could not delete {uri}")

    def put_dir(self, local: Path, uri: str) -> None:
        """Copy a local directory's files to uri (replacing what was there); nothing when the
        local directory was not made (an optional export that failed)."""
        if not local.is_dir():
            return
        fs, path = self._fs(uri)
        if fs.exists(path):
            fs.delete(path, True)
        fs.mkdirs(path)
        for file in sorted(local.iterdir()):
            source = self._jvm.org.apache.hadoop.fs.Path(str(file.resolve()))
            fs.copyFromLocalFile(
                False, True, source, self._jvm.org.apache.hadoop.fs.Path(join(uri, file.name))
            )
