"""The AWS hand-off: one SQS message per capture job (the image goes to S3 first when too big).

The message is sent (and acknowledged by SQS, which stores it redundantly) before the
caller is answered; the persist Lambda consumes it. A transient failure (database or
store down) is re-sent delayed by the persist Lambda, which therefore needs
``sqs:SendMessage`` on this queue (and ``TRAFFIC_QUEUE_URL``, else ``sqs:GetQueueUrl``);
permanent failures are redelivered by SQS and end in the dead-letter queue configured on
the queue (redrive policy). See :func:`.lambda_handlers.persist_handler`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .handoff import CaptureJob

# SQS allows 256 KiB per message; keep room for the header and base64's 4/3 growth.
INLINE_LIMIT = 150 * 1024
INCOMING_PREFIX = "incoming/"


class SqsHandoff:
    """Submits jobs to an SQS queue; large images are staged in the object store under ``incoming/``."""

    def __init__(self, sqs_client: Any, queue_url: str, store: Any, *, inline_limit: int = INLINE_LIMIT):
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.store = store
        self.inline_limit = inline_limit

    def submit(self, job: CaptureJob) -> None:
        body: dict[str, Any] = {"job": job.record.header()}
        if len(job.image) <= self.inline_limit:
            body["image_b64"] = base64.b64encode(job.image).decode()
        else:
            key = f"{INCOMING_PREFIX}{job.capture_id}.{job.record.extension}"
            self.store.put(key, job.image, job.record.content_type)
            body["image_key"] = key
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body, ensure_ascii=False))


def job_from_message(body: str, store: Any) -> tuple[CaptureJob, str | None]:
    """Rebuild the job of one SQS message; also return the staged key to delete once stored."""
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("job"), dict):
        raise ValueError("malformed persist message: no job header")
    staged = message.get("image_key")
    if staged:
        image = store.get(staged)  # ObjectNotFound (a KeyError) when the staged copy is gone
    elif message.get("image_b64"):
        image = base64.b64decode(message["image_b64"], validate=True)
    else:
        raise ValueError(f"malformed persist message for {message['job'].get('capture_id')}: neither image_b64 nor image_key")
    return CaptureJob.from_parts(message["job"], image), staged
