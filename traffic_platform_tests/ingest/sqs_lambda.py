"""What Lambda's SQS event source mapping does, for tests: receive a batch, call the persist
handler, delete what it did not report failed (failed ones return after the visibility timeout)."""

from __future__ import annotations

from typing import Any

from traffic_platform.ingest.lambda_handlers import persist_handler


def create_queue_with_dlq(sqs: Any, name: str, *, max_receive_count: int = 2, visibility_s: int = 30) -> tuple[str, str]:
    """A queue whose redrive policy moves a message received ``max_receive_count`` times to a DLQ."""
    import json

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
    })["QueueUrl"]
    return queue_url, dlq_url


def lambda_record(message: dict[str, Any], queue_arn: str = "arn:aws:sqs:eu-west-1:123456789012:q") -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType")}
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
    }


def poll_once(sqs: Any, queue_url: str, *, wait_s: int = 1, **handler_kwargs: Any) -> tuple[int, dict[str, Any]]:
    """One invocation: (messages received, the handler's answer)."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s,
                                   MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
    if not messages:
        return 0, {"batchItemFailures": []}
    result = persist_handler({"Records": [lambda_record(m) for m in messages]}, None, sqs=sqs, queue_url=queue_url, **handler_kwargs)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return len(messages), result


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Visible + in flight + delayed messages (moto answers these exactly)."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
    ])["Attributes"]
    return sum(int(v) for v in attrs.values())
