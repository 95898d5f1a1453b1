"""The run's metrics in the Prometheus text format, its JSON stage lines and JSON logs."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.config import build_config
from jobs.observe import export_metrics, run_line, stage_line
from schemas.manifest import RunManifest
from serving.local_redis import free_port
from serving.logs import JsonFormatter


def manifest() -> RunManifest:
    return RunManifest(
        run_id="r7",
        status="published",
        finished_at="2026-11-23T02:30:00+00:00",
        version="r7",
        quality={"k": 10, "model": {"ndcg": 0.25, "recall": 0.5}, "popularity": {"ndcg": 0.125}},
        stages=[
            {"stage": "ingest", "rows": 1000, "seconds": 3.5, "detail": ""},
            {"stage": "publish", "rows": 12, "seconds": 0.75, "detail": "version r7"},
        ],
    )


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_textfile_holds_stages_quality_and_the_run(tmp_path):
    path = tmp_path / "textfile" / "nightrec_job.prom"
    config = build_config({"metrics_file": str(path)}, {})

    export_metrics(manifest(), config)

    got = samples(path.read_text())
    assert got == {
        (
            "nightrec_job_last_run_info",
            (("run_id", "r7"), ("status", "published"), ("version", "r7")),
        ): 1.0,  # noqa: E501
        ("nightrec_job_last_run_success", ()): 1.0,
        ("nightrec_job_last_run_timestamp_seconds", ()): 1795401000.0,
        ("nightrec_job_stage_seconds", (("stage", "ingest"),)): 3.5,
        ("nightrec_job_stage_seconds", (("stage", "publish"),)): 0.75,
        ("nightrec_job_stage_rows", (("stage", "ingest"),)): 1000.0,
        ("nightrec_job_stage_rows", (("stage", "publish"),)): 12.0,
        ("nightrec_job_quality", (("k", "10"), ("metric", "ndcg"), ("ranker", "model"))): 0.25,
        ("nightrec_job_quality", (("k", "10"), ("metric", "recall"), ("ranker", "model"))): 0.5,
        (
            "nightrec_job_quality",
            (("k", "10"), ("metric", "ndcg"), ("ranker", "popularity")),
        ): 0.125,  # noqa: E501
    }
    assert list(path.parent.iterdir()) == [path]  # written atomically: no temp file left


def test_an_unreachable_pushgateway_only_warns_without_its_credentials(caplog):
    port = free_port()
    config = build_config({"pushgateway_url": f"http://ops:pushpw@127.0.0.1:{port}"}, {})

    with caplog.at_level(logging.WARNING, logger="jobs.observe"):
        export_metrics(manifest(), config)

    assert [r.getMessage() for r in caplog.records] == [
        f"could not push metrics to http://ops:***@127.0.0.1:{port}: "
        "<urlopen error [Errno 111] Connection refused>"
    ]


def test_pushgateway_credentials_in_the_url_are_sent_as_basic_auth():
    seen: list[tuple[str, str, str | None]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://ops:p%40ss@127.0.0.1:{server.server_port}"

    export_metrics(manifest(), build_config({"pushgateway_url": url}, {}))

    thread.join(timeout=10)
    server.server_close()
    token = base64.b64encode(b"ops:p@ss").decode()
    assert seen == [("PUT", "/metrics/job/nightrec_job", f"Basic {token}")]


def test_json_stage_and_run_lines_carry_the_run_id_and_version():
    m = manifest()

    stage = json.loads(stage_line("r7", m.stages[0], "[1/7]", "json"))
    run = json.loads(run_line(m))

    assert {k: stage[k] for k in ("event", "run_id", "stage", "rows", "seconds")} == {
        "event": "stage",
        "run_id": "r7",
        "stage": "ingest",
        "rows": 1000,
        "seconds": 3.5,
    }
    assert (run["event"], run["run_id"], run["version"], run["status"]) == (
        "run",
        "r7",
        "r7",
        "published",
    )
    assert run["seconds"] == {"ingest": 3.5, "publish": 0.75}
    assert stage_line("r7", m.stages[0], "[1/7]", "text").split() == (
        "[1/7] ingest 1,000 rows 3.5 s".split()
    )


def test_json_formatter_writes_one_object_per_record():
    record = logging.LogRecord("nightrec.serving", logging.INFO, "f", 1, "loaded %s", ("v2",), None)
    record.fields = {"version": "v2"}

    line = JsonFormatter(component="api").format(record)

    entry = json.loads(line)
    assert "\n" not in line
    assert {k: entry[k] for k in ("level", "logger", "message", "component", "version")} == {
        "level": "INFO",
        "logger": "nightrec.serving",
        "message": "loaded v2",
        "component": "api",
        "version": "v2",
    }


@pytest.mark.slow
def test_a_failed_run_logs_json_and_writes_its_metrics(tmp_path):
    env = {
        **os.environ,
        "NIGHTREC_LOG_FORMAT": "json",
        "NIGHTREC_METRICS_FILE": str(tmp_path / "job.prom"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "run", "--data", str(tmp_path / "absent"),
         "--out", str(tmp_path / "out"), "--stages", "ingest", "--spark-master", "local[1]"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip

    assert proc.returncode == 1
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (record["event"], record["status"], record["level"]) == ("run", "failed", "ERROR")
    assert re.fullmatch(r"\d{8}T\d{6}Z", record["run_id"])
    assert record["reason"].startswith("ingest: input not found: ")
    got = samples((tmp_path / "job.prom").read_text())
    assert got[("nightrec_job_last_run_success", ())] == 0.0
    assert got[("nightrec_job_last_run_info", (("run_id", record["run_id"]), ("status", "failed"),
                                               ("version", "")))] == 1.0  # fmt: skip
