"""The SageMaker backend: a remote endpoint sent the image **bytes**, one image per request.

One ``sagemaker-runtime`` client per detector, created once (connections pooled, thread-safe),
with a connect/read timeout from ``TRAFFIC_SAGEMAKER_TIMEOUT_S`` and botocore's *standard*
retry mode. On top, a short retry loop of our own (exponential back-off with full jitter)
covers what the SDK does not retry or gives up on: the container answering 5xx/429
(SageMaker wraps that in ``ModelError``, HTTP 424), throttling, 5xx and unreachable or slow
endpoints. Failures become :class:`ServiceUnavailable` (retry later: the endpoint is down,
throttled or too slow) or :class:`DetectorError` (the endpoint answered, but refused or failed
on this image); every message names the endpoint and the cause.

The endpoint (``sagemaker_inference.py``) answers the shared JSON shape; we map labels,
apply ``TRAFFIC_SCORE_THRESHOLD`` / ``TRAFFIC_CLASS_THRESHOLDS`` again and clip boxes through
:func:`~traffic_platform.domain.detections.to_traffic_detections`, so the endpoint's own
thresholds can only be *raised* here, never lowered.

The endpoint URL: boto3 itself honours ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` and
``AWS_ENDPOINT_URL`` (and ``endpoint_url=`` here), e.g. to call the local
:mod:`~traffic_platform.detection.model_server`.

Model name and version come from the endpoint's answers: every answer updates them (a new
deployment behind the same endpoint shows up on its first answer; :meth:`SageMakerDetector.invoke`
returns the exact pair per answer), and reading them before any answer sends one tiny
warm-up invocation (:meth:`SageMakerDetector.warmup`).
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..domain.detections import ClassThresholds, Detection, to_traffic_detections
from ..domain.errors import DetectorError, ServiceUnavailable
from .base import Detector, ImageInput

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

#: A connection to the SageMaker runtime front is made in well under a second; waiting the
#: full read timeout for it only delays the error when the endpoint URL is wrong or down.
MAX_CONNECT_TIMEOUT_S = 3.0
#: Error codes that mean "slow down": retried after back-off.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ModelNotReadyException",
        "429",
    }
)
#: Status codes that mean "the endpoint (or its model) is briefly unwell": retried.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
#: Error codes without a useful status that are transient as well.
TRANSIENT_CODES = frozenset(
    {"InternalFailure", "ServiceUnavailable", "InternalDependencyException", "InternalServerError"}
)


@dataclass(frozen=True)
class EndpointAnswer:
    """One endpoint answer: the road users kept client-side and the model that found them."""

    detections: list[Detection]
    model_name: str
    model_version: str


class SageMakerDetector(Detector):
    """Detections from a SageMaker real-time endpoint (or anything speaking its contract).

    Args:
        endpoint_name: the SageMaker endpoint.
        thresholds: per-class score thresholds applied to the endpoint's answer.
        timeout_s: read timeout of one request (the connect timeout is capped at 3 s).
        region: AWS region; ``None`` takes boto3's (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` /
            the profile), else ``eu-west-1``.
        endpoint_url: overrides the runtime URL (boto3's env overrides work without it).
        max_attempts: attempts of our own retry loop per image (>= 1).
        sdk_max_attempts: botocore standard-mode attempts inside each of ours (>= 1); worst
            case ``max_attempts * sdk_max_attempts`` requests per image.
        backoff_base_s, backoff_max_s: our back-off: a random sleep in
            ``[0, min(backoff_max_s, backoff_base_s * 2**retry)]`` (full jitter).
        max_workers: parallel requests of one batch (one image per request).
        client: a ready ``sagemaker-runtime`` client (its config is then the caller's).
        session: the boto3 session to build the client from.
    """

    def __init__(
        self,
        endpoint_name: str,
        *,
        thresholds: ClassThresholds | None = None,
        timeout_s: float = 10.0,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 3,
        sdk_max_attempts: int = 2,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 2.0,
        max_workers: int = 4,
        client: Any = None,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not endpoint_name:
            raise ValueError("endpoint_name is required")
        if max_attempts < 1 or sdk_max_attempts < 1 or max_workers < 1:
            raise ValueError("max_attempts, sdk_max_attempts and max_workers must be >= 1")
        self.endpoint_name = endpoint_name
        self.thresholds = thresholds or ClassThresholds()
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._owns_client = client is None
        self.client = (
            client
            if client is not None
            else _make_client(
                session=session,
                region=region,
                endpoint_url=endpoint_url,
                timeout_s=self.timeout_s,
                sdk_max_attempts=sdk_max_attempts,
                pool=max_workers,
            )
        )
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=f"sagemaker-{endpoint_name}"
        )
        self._model: tuple[str, str] | None = None
        self._model_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, endpoint_name: str, settings: Settings, **overrides: Any
    ) -> SageMakerDetector:
        """The detector ``TRAFFIC_DETECTOR=sagemaker:<endpoint_name>`` asks for."""
        options: dict[str, Any] = {
            "thresholds": settings.thresholds,
            "timeout_s": settings.sagemaker_timeout_s,
            "max_workers": max(1, min(settings.detector_batch_size, 8)),
            "region": None,
        }
        options.update(overrides)
        if options["region"] is None and options.get("client") is None:
            import boto3

            session = options.get("session") or boto3.session.Session()
            options["session"] = session
            options["region"] = session.region_name or settings.s3_region
        return cls(endpoint_name, **options)

    # -- Detector ------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return str(self.client.meta.endpoint_url)

    @property
    def model_name(self) -> str:  # type: ignore[override]
        return self._known_model()[0]

    @property
    def model_version(self) -> str:  # type: ignore[override]
        return self._known_model()[1]

    def detect(self, batch: Sequence[ImageInput]) -> list[list[Detection]]:
        """One request per image, sent in parallel; the first failure is raised."""
        if len(batch) == 1:
            return [self.invoke(batch[0]).detections]
        return [answer.detections for answer in self._pool.map(self.invoke, batch)]

    def warmup(self) -> None:
        """Send one tiny image: wakes the endpoint and learns its model name and version."""
        from PIL import Image

        image = Image.new("RGB", (64, 64), (128, 128, 128))
        self.invoke(ImageInput(image=image))

    def close(self) -> None:
        """Release the thread pool and (if this detector made it) the client's connections."""
        self._pool.shutdown(wait=True)
        close = getattr(self.client, "close", None)
        if self._owns_client and close is not None:
            close()

    def __enter__(self) -> SageMakerDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one image -----------------------------------------------------------------------
    def invoke(self, image: ImageInput) -> EndpointAnswer:
        """Send one image's bytes and return the endpoint's answer, filtered client-side."""
        body, content_type = encode_for_endpoint(image)
        payload = self._invoke_with_retries(body, content_type)
        answer = self._parse(payload, image.size)
        self._remember_model(answer.model_name, answer.model_version)
        return answer

    def _invoke_with_retries(self, body: bytes, content_type: str) -> bytes:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._invoke_once(body, content_type)
            except _Transient as exc:
                if attempt == self.max_attempts:
                    raise exc.final(self, attempt) from exc.__cause__
                delay = random.uniform(
                    0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
                )
                log.warning(
                    "SageMaker endpoint %r: %s; retry %d/%d in %.2f s",
                    self.endpoint_name,
                    exc.reason,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _invoke_once(self, body: bytes, content_type: str) -> bytes:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            IncompleteReadError,
            NoCredentialsError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
            )
            return response["Body"].read()
        except ClientError as exc:
            raise self._classify(exc) from exc
        except ReadTimeoutError as exc:
            raise _Transient(f"no answer within {self.timeout_s:g} s", unavailable=True) from exc
        except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as exc:
            raise _Transient(
                f"cannot connect to {self.endpoint_url} ({exc})", unavailable=True
            ) from exc
        except (ResponseStreamingError, IncompleteReadError) as exc:
            raise _Transient(f"the answer was cut off ({exc})", unavailable=True) from exc
        except NoCredentialsError as exc:
            raise DetectorError(
                f"SageMaker endpoint {self.endpoint_name!r}: no AWS credentials found "
                "(set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role).",
                code="detector_not_configured",
            ) from exc
        except BotoCoreError as exc:
            raise DetectorError(
                f"SageMaker endpoint {self.endpoint_name!r} at {self.endpoint_url}: {exc}"
            ) from exc

    def _classify(self, exc: Any) -> Exception:
        """A ClientError -> a retryable :class:`_Transient` or a final :class:`DetectorError`."""
        response = exc.response
        error = response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "").strip()
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "ModelError":
            # The container answered non-2xx; SageMaker wraps its status and message.
            original = int(response.get("OriginalStatusCode") or 0)
            original_message = str(response.get("OriginalMessage") or message)
            log_stream = response.get("LogStreamArn")
            where = f" (logs: {log_stream})" if log_stream else ""
            if original in TRANSIENT_STATUS:
                return _Transient(
                    f"the model answered HTTP {original}: {original_message}{where}",
                    unavailable=original in (429, 503),
                )
            return DetectorError(
                f"SageMaker endpoint {self.endpoint_name!r}: the model answered HTTP {original or '?'}: {original_message}{where}",
                details={
                    "endpoint": self.endpoint_name,
                    "status": original,
                    "log_stream": log_stream,
                },
            )
        if code in THROTTLING_CODES or status == 429:
            return _Transient(f"throttled ({code or status}: {message})", unavailable=True)
        if status in TRANSIENT_STATUS or code in TRANSIENT_CODES:
            return _Transient(
                f"HTTP {status} {code}: {message}",
                unavailable=status == 503 or code == "ServiceUnavailable",
            )
        return DetectorError(
            f"SageMaker endpoint {self.endpoint_name!r} at {self.endpoint_url} refused the request "
            f"(HTTP {status} {code}): {message or 'no message'}",
            details={"endpoint": self.endpoint_name, "status": status, "code": code},
        )

    def _parse(self, payload: bytes, size: tuple[int, int]) -> EndpointAnswer:
        width, height = size
        try:
            data = json.loads(payload)
            items = data["detections"]
            labels = [str(item["label"]) for item in items]
            scores = [float(item["score"]) for item in items]
            boxes = [[float(v) for v in item["box"]] for item in items]
            if any(len(b) != 4 for b in boxes):
                raise ValueError("a box is not [x1, y1, x2, y2]")
            name, version = str(data["model_name"]), str(data["model_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DetectorError(
                f"SageMaker endpoint {self.endpoint_name!r} answered something other than the detections JSON "
                f"({type(exc).__name__}: {exc}); first bytes: {payload[:200]!r}"
            ) from None
        answered_size = data.get("image_size")
        if answered_size is not None and [int(v) for v in answered_size] != [width, height]:
            raise DetectorError(
                f"SageMaker endpoint {self.endpoint_name!r} decoded the image as {answered_size[0]}x{answered_size[1]}, "
                f"we decoded it as {width}x{height}: the boxes would not fit (EXIF orientation?)."
            )
        detections = to_traffic_detections(
            labels, scores, boxes, width=width, height=height, thresholds=self.thresholds
        )
        return EndpointAnswer(detections, name, version)

    # -- model name / version --------------------------------------------------------------
    def _remember_model(self, name: str, version: str) -> None:
        with self._model_lock:
            if self._model != (name, version):
                if self._model is not None:
                    log.warning(
                        "SageMaker endpoint %r now serves %s@%s (was %s@%s)",
                        self.endpoint_name,
                        name,
                        version,
                        *self._model,
                    )
                self._model = (name, version)

    def _known_model(self) -> tuple[str, str]:
        if self._model is None:
            self.warmup()
        assert self._model is not None
        return self._model

    def describe(self) -> dict[str, str]:
        name, version = self._known_model()
        return {"model_name": name, "model_version": version, "endpoint": self.endpoint_name}


class _Transient(Exception):
    """A failure worth retrying; :meth:`final` turns it into the error the caller gets."""

    def __init__(self, reason: str, *, unavailable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable

    def final(self, detector: SageMakerDetector, attempts: int) -> Exception:
        message = (
            f"SageMaker endpoint {detector.endpoint_name!r} at {detector.endpoint_url} failed after "
            f"{attempts} attempt{'s' if attempts > 1 else ''}: {self.reason}"
        )
        details = {"endpoint": detector.endpoint_name, "attempts": attempts}
        if self.unavailable:
            return ServiceUnavailable(message + ". Retry later.", details=details)
        return DetectorError(message, details=details)


def encode_for_endpoint(image: ImageInput) -> tuple[bytes, str]:
    """The bytes to send and their content type: the original bytes as they are, else a JPEG (q95)."""
    if image.data is not None:
        return image.data, image.content_type or sniff_content_type(image.data)
    picture = image.image
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), "image/jpeg"


def sniff_content_type(data: bytes) -> str:
    """``image/jpeg`` / ``image/png`` from the magic bytes, else ``application/x-image``."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    return "application/x-image"


def _make_client(
    *,
    session: Any,
    region: str | None,
    endpoint_url: str | None,
    timeout_s: float,
    sdk_max_attempts: int,
    pool: int,
) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=min(timeout_s, MAX_CONNECT_TIMEOUT_S),
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": sdk_max_attempts},
        max_pool_connections=max(10, pool),
    )
    session = session or boto3.session.Session()
    return session.client(
        "sagemaker-runtime",
        region_name=region or session.region_name or "eu-west-1",
        endpoint_url=endpoint_url,
        config=config,
    )


__all__ = ["EndpointAnswer", "SageMakerDetector", "encode_for_endpoint", "sniff_content_type"]
