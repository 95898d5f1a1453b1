"""The version: which one this worker serves, when it was generated, how well it measured."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.app import current_version
from serving.models import VersionInfo
from serving.openapi import operation
from serving.versions import Version

bp = Blueprint("version", __name__)


@bp.get("/v1/version")
@operation(response=VersionInfo, errors=(503,), tag="versions")
def version_info() -> Response:
    """Return the served version's name, run, generation time, sizes and quality metrics."""
    return jsonify(describe(current_version()))


def describe(version: Version) -> VersionInfo:
    """Return what a client is told about a version."""
    meta = version.meta
    users = meta.get("users")
    return VersionInfo(
        version=version.name,
        run_id=str(meta.get("run_id", "")),
        generated_at=version.generated_at,
        users=users if isinstance(users, int) else None,
        items=len(version.catalogue.item_ids),
        encoder=str(meta.get("encoder", "")),
        search=version.complete,
        quality=version.quality,
    )
