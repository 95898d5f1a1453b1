"""Nothing the API reads from disk can run code: the serving code never unpickles (checked in
its source), and a version whose index directory holds a live pickle payload is refused with
the payload never run, while its lists stay served (real index, Redis and app)."""

from __future__ import annotations

import ast
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import serving
from schemas.manifest import INDEX_EMBEDDINGS, INDEX_SEARCHER_DIR
from serving.app import create_app
from serving.item_index import SCANN_DOCIDS, IndexLoadError, ItemIndex

REPO = Path(serving.__file__).resolve().parent.parent
SERVING_CODE = ("serving", "schemas")  # what the API process imports (serving/ never imports jobs/)
UNPICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def dotted(node: ast.AST) -> str:
    """Return "np.load" for the expression np.load ("" for anything that is not a name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def is_constant(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loads(source: str) -> list[str]:
    """Return every way a source can unpickle: an unpickling module imported, np.load without
    allow_pickle=False, torch.load without weights_only=True, read_pickle, remote code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [(node.module or "").split(".")[0]]
        found += [f"line {node.lineno}: import {m}" for m in modules if m in UNPICKLERS]
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        unsafe = (
            (
                name in ("np.load", "numpy.load")
                and not is_constant(keywords.get("allow_pickle"), False)
            )
            or (name == "torch.load" and not is_constant(keywords.get("weights_only"), True))
            or name.endswith("read_pickle")
            or is_constant(keywords.get("trust_remote_code"), True)
        )
        if unsafe:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_each_way_to_unpickle():
    risky = """
import pickle
from joblib import load
a = np.load(path)
b = np.load(path, allow_pickle=True)
c = torch.load(path)
d = pd.read_pickle(path)
e = AutoModel.from_pretrained(name, trust_remote_code=True)
ok = np.load(path, mmap_mode="r", allow_pickle=False)
ok = torch.load(path, weights_only=True)
"""
    assert len(unsafe_loads(risky)) == 7


def test_the_serving_code_never_unpickles():
    files = sorted(p for package in SERVING_CODE for p in (REPO / package).rglob("*.py"))
    assert REPO / "serving" / "item_index.py" in files
    found = {
        str(path.relative_to(REPO)): problems
        for path in files
        if (problems := unsafe_loads(path.read_text(encoding="utf-8")))
    }
    assert found == {}
    index_source = (REPO / "serving" / "item_index.py").read_text(encoding="utf-8")
    assert "allow_pickle=False" in index_source  # the index's embeddings: the one np.load


class Payload:
    """Unpickling this creates `marker`: a stand-in for code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(index: Path, how: str, marker: Path) -> None:
    """Put a live pickle payload into an index directory, the way `how` names."""
    if how == "npy_object_array":
        array = np.array([Payload(marker)], dtype=object)
        np.save(index / INDEX_EMBEDDINGS, array, allow_pickle=True)
    elif how == "pickle_as_npy":
        (index / INDEX_EMBEDDINGS).write_bytes(pickle.dumps(Payload(marker)))
    else:
        (index / INDEX_SEARCHER_DIR / SCANN_DOCIDS).write_bytes(pickle.dumps(Payload(marker)))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["npy_object_array", "pickle_as_npy", "scann_docids"])
def test_a_planted_pickle_is_refused_and_never_run(published, tmp_path, how):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()  # the payload is live: unpickled, it runs

    out = tmp_path / "out"
    shutil.copytree(published.out / "runs" / published.version, out / "runs" / published.version)
    index = out / "runs" / published.version / "index"
    marker = tmp_path / "pwned"
    plant(index, how, marker)

    with pytest.raises(IndexLoadError, match="pickle"):
        ItemIndex.load(index)
    client = create_app(published.config(out=str(out)), background=False).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "pickle" in ready.get_json()["reason"]
    assert client.get("/v1/users/9/recommendations").status_code == 200  # lists still served
    search = client.get("/v1/search?q=zombies")
    assert search.status_code == 503 and search.get_json()["error"]["code"] == "unavailable"
    assert not marker.exists()
