"""``GET /v1/captures/{id}`` on both homes: the database and object store, plus the spool where
there is one.

The embedded home has a spool, so it can say ``pending`` (handed off, not stored yet) or
``failed`` (dead-lettered). On Lambda the hand-off is an SQS message nobody can look into,
so an id the database does not know answers 404 ``capture_not_found`` with
``details.may_be_queued: true``: it may still be on its way to the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..domain.captures import ACCEPTED, CONTENT_TYPE_OF_EXTENSION
from ..domain.errors import NotFound
from .api import PERSIST_FAILED, STORED, CaptureLookup, pending_answer

if TYPE_CHECKING:
    from ..storage.objectstore import ObjectStore
    from ..storage.repository import Repository
    from .spool import Spool


class StoredCaptureLookup(CaptureLookup):
    """A capture's state from the database, else the spool (pending) or its dead letters (failed)."""

    def __init__(self, repo: Repository, store: ObjectStore, spool: Spool | None = None):
        self.repo, self.store, self.spool = repo, store, spool

    def status(self, capture_id: str) -> dict[str, Any]:
        row = self.repo.get_capture(capture_id)
        if row is not None:
            return {**row, "status": STORED if row.get("status") == ACCEPTED else row.get("status")}
        spool = self.spool
        if spool is not None:
            if spool.is_pending(capture_id):
                job = spool.load(capture_id)
                return pending_answer(job.record, spool.attempts(capture_id).get("last_error"))
            reason = spool.dead_reason(capture_id)
            if reason is not None:
                return {"capture_id": capture_id, "status": PERSIST_FAILED, "error": reason.get("reason")}
        raise self._unknown(capture_id)

    def image(self, capture_id: str, annotated: bool) -> tuple[bytes, str]:
        row = self.repo.get_capture(capture_id)
        if row is None:
            if self.spool is not None and self.spool.is_pending(capture_id):
                raise NotFound(f"Capture {capture_id} is still being stored; try again in a moment.", code="capture_pending")
            raise self._unknown(capture_id)
        key = row.get("annotated_key") if annotated else row.get("image_key")
        if not key:
            raise NotFound(f"Capture {capture_id} has no {'annotated ' if annotated else ''}image (status {row.get('status')}).", code="image_not_found")
        try:
            data = self.store.get(key)
        except KeyError:  # ObjectNotFound
            raise NotFound(f"The image of capture {capture_id} is missing from the object store.", code="image_not_found") from None
        return data, content_type_of_key(key)

    def _unknown(self, capture_id: str) -> NotFound:
        if self.spool is not None:
            return NotFound(f"No capture {capture_id}: it was never accepted here.", code="capture_not_found")
        return NotFound(
            f"No capture {capture_id} is stored. Captures are stored asynchronously: one accepted "
            "moments ago may still be queued, so try again shortly.",
            code="capture_not_found",
            details={"capture_id": capture_id, "may_be_queued": True},
        )


def content_type_of_key(key: str) -> str:
    """Stored objects are named by what their bytes are (``.jpg`` JPEG, ``.png`` PNG)."""
    return CONTENT_TYPE_OF_EXTENSION.get(key.rpartition(".")[2].lower(), "application/octet-stream")
