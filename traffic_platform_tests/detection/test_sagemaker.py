"""The SageMaker path end to end, over real HTTP, without AWS.

A tiny random-weight YOLOS checkpoint is served by :class:`ModelServer` through the
endpoint's own inference script; :class:`SageMakerDetector` calls it with a real boto3
``sagemaker-runtime`` client pointed at ``http://127.0.0.1:<port>`` (fake credentials).
Answers are compared with transformers' own processor + ``post_process_object_detection``.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from traffic_platform.config import Settings
from traffic_platform.detection import sagemaker_inference as inference
from traffic_platform.detection.base import ImageInput
from traffic_platform.detection.model_server import ModelServer
from traffic_platform.detection.sagemaker import (
    SageMakerDetector,
    encode_for_endpoint,
    sniff_content_type,
)
from traffic_platform.detection.tiny_models import NON_TRAFFIC_LABELS, build_spread_yolos
from traffic_platform.domain.classes import traffic_class_for
from traffic_platform.domain.detections import ClassThresholds, clip_box
from traffic_platform.domain.errors import (
    DetectorError,
    DistortedImage,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedImage,
)

ENDPOINT = "traffic-detector-test"
THRESHOLD = 0.3  # the tiny model's scores spread over ~0.2-0.7: some kept, some dropped
STREET = Path("/work/shared/data/street")


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_spread_yolos(tmp_path_factory.mktemp("tiny-yolos"))


@pytest.fixture(scope="module")
def endpoint_env(aws_env: dict[str, str]) -> Iterator[None]:
    """The endpoint's own environment: its score threshold (read by ``Settings.from_env``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAFFIC_SCORE_THRESHOLD", str(THRESHOLD))
        # fp32, so answers compare with transformers' own fp32 code to rounding; "auto" may
        # pick bf16 on hosts with native bf16, which moves scores ~1e-4 and boxes by pixels.
        mp.setenv("TRAFFIC_DETECTOR_RUNTIME", "torch")
        mp.delenv("TRAFFIC_CLASS_THRESHOLDS", raising=False)
        for name in ("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        inference.settings.cache_clear()
        yield
        inference.settings.cache_clear()


@pytest.fixture(scope="module")
def server(model_dir: Path, endpoint_env: None) -> Iterator[ModelServer]:
    with ModelServer(str(model_dir), "127.0.0.1", 0, endpoint_name=ENDPOINT) as srv:
        yield srv


@pytest.fixture
def detector(server: ModelServer) -> Iterator[SageMakerDetector]:
    det = SageMakerDetector(
        ENDPOINT,
        endpoint_url=server.url,
        thresholds=ClassThresholds(default=THRESHOLD),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    yield det
    det.close()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, str | None]]:
    """Every request body + content type the endpoint's ``input_fn`` receives."""
    seen: list[tuple[bytes, str | None]] = []
    original = inference.input_fn
    lock = threading.Lock()

    def recording(body: bytes, content_type: str | None) -> Any:
        with lock:
            seen.append((bytes(body), content_type))
        return original(body, content_type)

    monkeypatch.setattr(inference, "input_fn", recording)
    return seen


def _street_jpeg() -> bytes:
    path = STREET / "yolov5_bus.jpg"
    if path.exists():
        return path.read_bytes()
    buffer = io.BytesIO()
    Image.effect_mandelbrot((480, 360), (-2, -1.2, 1, 1.2), 100).convert("RGB").save(
        buffer, "JPEG", quality=90
    )
    return buffer.getvalue()


def _input(data: bytes, content_type: str | None = None) -> ImageInput:
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageInput(image=image.convert("RGB"), data=data, content_type=content_type)


def reference_detections(
    directory: Path, image, *, threshold: float
) -> list[tuple[str, float, list[float]]]:
    """What transformers' own processor + ``post_process_object_detection`` find in ``image``.

    ``(label, score, [x1, y1, x2, y2])`` per detection above ``threshold`` (all labels,
    boxes not clipped): the reference the endpoint's answer is compared with.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    processor = AutoImageProcessor.from_pretrained(directory)
    model = AutoModelForObjectDetection.from_pretrained(directory).eval()
    inputs = processor(images=[image], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=[image.size[::-1]]
    )[0]
    return [
        (model.config.id2label[int(label)], float(score), [float(v) for v in box])
        for label, score, box in zip(
            result["labels"], result["scores"], result["boxes"], strict=True
        )
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _expected(
    model_dir: Path, image: Image.Image, thresholds: ClassThresholds
) -> list[tuple[str, str, float, tuple]]:
    """transformers' own answer, kept and clipped the way the platform defines it."""
    width, height = image.size
    kept = []
    for label, score, box in reference_detections(model_dir, image, threshold=thresholds.minimum):
        cls = traffic_class_for(label)
        if cls is not None and score >= thresholds.for_class(cls):
            kept.append((cls.value, label, score, clip_box(box, width, height)))
    return sorted(kept, key=lambda t: (-t[2], t[1]))


def _actual(detections) -> list[tuple[str, str, float, tuple]]:
    return sorted(
        ((d.traffic_class.value, d.label, d.score, d.box) for d in detections),
        key=lambda t: (-t[2], t[1]),
    )


def _assert_same(actual, expected) -> None:
    assert [(c, lab) for c, lab, _, _ in actual] == [(c, lab) for c, lab, _, _ in expected]
    for (_, _, score, box), (_, _, ref_score, ref_box) in zip(actual, expected, strict=True):
        assert score == pytest.approx(ref_score, abs=1e-5)  # the JSON carries 6 decimals
        assert box == pytest.approx(ref_box, abs=0.01)  # and 2 decimals of a pixel


# -- the answer ------------------------------------------------------------------------------
def test_detections_equal_transformers_own_post_processing(detector, model_dir):
    data = _street_jpeg()
    image = _input(data, "image/jpeg")
    raw = reference_detections(model_dir, image.image, threshold=THRESHOLD)
    # The tiny model must exercise both sides of the filter, or this test proves little.
    assert {label for label, _, _ in raw} & NON_TRAFFIC_LABELS
    assert {"car", "person", "bus"} <= {label for label, _, _ in raw}

    found = detector.detect_one(image)

    assert found, "the tiny model finds road users above the threshold"
    assert not {d.label for d in found} & NON_TRAFFIC_LABELS
    _assert_same(_actual(found), _expected(model_dir, image.image, detector.thresholds))
    width, height = image.size
    assert all(
        0 <= d.box[0] <= d.box[2] <= width and 0 <= d.box[1] <= d.box[3] <= height for d in found
    )


def test_detections_equal_the_in_process_backend(detector, server):
    image = _input(_street_jpeg(), "image/jpeg")
    remote = detector.detect_one(image)
    # The endpoint's own TransformersDetector, called in this process.
    local = server.model.detect_one(image)
    _assert_same(_actual(remote), _actual(local))


def test_model_name_and_version_come_from_the_endpoint(detector, server):
    detector.detect_one(_input(_street_jpeg()))
    assert detector.model_name == server.model.model_name
    assert detector.model_version == server.model.model_version
    assert detector.describe()["endpoint"] == ENDPOINT


def test_model_version_before_any_answer_sends_one_warmup(server, recorded):
    with SageMakerDetector(ENDPOINT, endpoint_url=server.url) as det:
        assert det.model_version == server.model.model_version
        assert det.model_name == server.model.model_name
        assert len(recorded) == 1  # one probe, then remembered
        body, ctype = recorded[0]
        assert ctype == "image/jpeg" and Image.open(io.BytesIO(body)).size == (64, 64)


def test_client_side_thresholds_can_only_drop_more(server, model_dir):
    strict = ClassThresholds(default=THRESHOLD, per_class={"car": 0.99, "person": 0.99})
    image = _input(_street_jpeg())
    assert {"car", "person"} <= {
        c for c, _, _, _ in _expected(model_dir, image.image, ClassThresholds(default=THRESHOLD))
    }
    with SageMakerDetector(ENDPOINT, endpoint_url=server.url, thresholds=strict) as det:
        found = det.detect_one(image)
    assert not {d.traffic_class.value for d in found} & {"car", "person"}
    _assert_same(_actual(found), _expected(model_dir, image.image, strict))


# -- what is sent ----------------------------------------------------------------------------
def test_the_endpoint_receives_the_exact_image_bytes(detector, recorded):
    data = _street_jpeg()
    detector.detect_one(_input(data, "image/jpeg"))
    assert recorded == [(data, "image/jpeg")]


def test_png_bytes_are_sent_as_png(detector, recorded):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 120), (40, 90, 160)).save(buffer, "PNG")
    data = buffer.getvalue()
    detector.detect_one(_input(data))  # no content type given: sniffed from the bytes
    assert recorded == [(data, "image/png")]


def test_a_picture_without_bytes_is_sent_as_a_high_quality_jpeg(detector, recorded, model_dir):
    picture = Image.open(io.BytesIO(_street_jpeg())).convert("RGB")
    found = detector.detect_one(ImageInput(image=picture))
    ((body, ctype),) = recorded
    assert ctype == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    sent = Image.open(io.BytesIO(body))
    assert sent.size == picture.size
    _assert_same(_actual(found), _expected(model_dir, sent.convert("RGB"), detector.thresholds))


def test_a_batch_is_sent_one_image_per_request_and_answers_keep_their_order(
    detector, recorded, model_dir
):
    sizes = [(320, 240), (240, 320), (500, 200), (128, 128), (300, 300)]
    inputs = []
    for i, size in enumerate(sizes):
        buffer = io.BytesIO()
        Image.new("RGB", size, (30 * i, 100, 200 - 30 * i)).save(buffer, "JPEG", quality=92)
        inputs.append(_input(buffer.getvalue(), "image/jpeg"))

    results = detector.detect(inputs)

    assert len(results) == len(inputs) and len(recorded) == len(inputs)
    assert sorted(body for body, _ in recorded) == sorted(i.data for i in inputs)
    for image, found in zip(inputs, results, strict=True):
        _assert_same(_actual(found), _expected(model_dir, image.image, detector.thresholds))


def test_one_client_is_reused_for_every_call(detector):
    client = detector.client
    calls = []
    client.meta.events.register(
        "before-call.sagemaker-runtime.InvokeEndpoint", lambda **kw: calls.append(kw["model"].name)
    )
    image = _input(_street_jpeg())
    detector.detect_one(image)
    detector.detect([image, image, image])
    assert detector.client is client
    assert calls == ["InvokeEndpoint"] * 4  # all four went through that one client


def test_client_timeouts_and_retry_mode_come_from_settings(server):
    settings = Settings(sagemaker_timeout_s=7.5)
    with SageMakerDetector.from_settings(ENDPOINT, settings, endpoint_url=server.url) as det:
        config = det.client.meta.config
        assert config.read_timeout == 7.5
        assert config.connect_timeout == 3.0  # capped: a dead endpoint is reported fast
        assert config.retries["mode"] == "standard"
        assert config.retries["total_max_attempts"] == 2


# -- endpoint URL overrides (boto3's own) ---------------------------------------------------
@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL"])
def test_boto3_endpoint_url_environment_variables_are_honoured(
    server, monkeypatch, variable, recorded
):
    monkeypatch.setenv(variable, server.url)
    settings = Settings(thresholds=ClassThresholds(default=THRESHOLD))
    with SageMakerDetector.from_settings(ENDPOINT, settings) as det:
        assert det.endpoint_url == server.url
        det.detect_one(_input(_street_jpeg()))
    assert len(recorded) == 1


# -- errors ----------------------------------------------------------------------------------
def test_an_unsupported_content_type_is_a_clear_detector_error(detector):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "GIF")
    with pytest.raises(DetectorError) as info:
        detector.detect_one(_input(buffer.getvalue(), "image/gif"))
    message = info.value.message
    assert ENDPOINT in message and "415" in message and "image/gif" in message
    assert "image/jpeg" in message  # says what to send instead


def test_undecodable_bytes_are_a_clear_detector_error(detector):
    picture = Image.new("RGB", (64, 64))
    with pytest.raises(DetectorError) as info:
        detector.detect_one(
            ImageInput(
                image=picture, data=b"\xff\xd8\xff\xe0 not really a jpeg", content_type="image/jpeg"
            )
        )
    assert "422" in info.value.message and "could not be decoded" in info.value.message
    assert info.value.details["status"] == 422


def test_an_unknown_endpoint_name_is_reported_with_its_name(server):
    with SageMakerDetector("no-such-endpoint", endpoint_url=server.url) as det:
        with pytest.raises(DetectorError) as info:
            det.detect_one(_input(_street_jpeg()))
    assert "no-such-endpoint" in info.value.message and "404" in info.value.message


def test_transient_503s_are_retried_until_success(server, monkeypatch, model_dir):
    attempts = []
    original = inference.predict_fn

    def flaky(data, model):
        attempts.append(1)
        if len(attempts) <= 2:
            raise ServiceUnavailable("warming up", code="model_loading")
        return original(data, model)

    monkeypatch.setattr(inference, "predict_fn", flaky)
    sleeps: list[float] = []
    image = _input(_street_jpeg())
    with SageMakerDetector(
        ENDPOINT,
        endpoint_url=server.url,
        thresholds=ClassThresholds(default=THRESHOLD),
        sdk_max_attempts=1,
        max_attempts=3,
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        sleep=sleeps.append,
    ) as det:
        found = det.detect_one(image)
    assert len(attempts) == 3
    # Exponential back-off with full jitter: [0, 0.2] then [0, 0.4].
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.4
    _assert_same(
        _actual(found), _expected(model_dir, image.image, ClassThresholds(default=THRESHOLD))
    )


def test_botocore_standard_retries_and_ours_compose(server, monkeypatch):
    attempts = []
    original = inference.predict_fn

    def flaky(data, model):
        attempts.append(1)
        if len(attempts) <= 2:
            raise ServiceUnavailable("warming up")
        return original(data, model)

    monkeypatch.setattr(inference, "predict_fn", flaky)
    # botocore retries the first 503 itself; the second exhausts its 2 attempts; ours retries once more.
    with SageMakerDetector(
        ENDPOINT, endpoint_url=server.url, sdk_max_attempts=2, sleep=lambda s: None
    ) as det:
        det.detect_one(_input(_street_jpeg()))
    assert len(attempts) == 3


def test_a_persistent_503_becomes_service_unavailable(server, monkeypatch):
    monkeypatch.setattr(
        inference, "predict_fn", _raiser(ServiceUnavailable("the model is reloading"))
    )
    with SageMakerDetector(
        ENDPOINT, endpoint_url=server.url, sdk_max_attempts=1, max_attempts=3, sleep=lambda s: None
    ) as det:
        with pytest.raises(ServiceUnavailable) as info:
            det.detect_one(_input(_street_jpeg()))
    message = info.value.message
    assert (
        ENDPOINT in message
        and "3 attempts" in message
        and "503" in message
        and "reloading" in message
    )


def test_a_model_crash_is_a_detector_error_with_the_cause(server, monkeypatch):
    monkeypatch.setattr(inference, "predict_fn", _raiser(RuntimeError("CUDA out of memory")))
    with SageMakerDetector(
        ENDPOINT, endpoint_url=server.url, sdk_max_attempts=1, max_attempts=2, sleep=lambda s: None
    ) as det:
        with pytest.raises(DetectorError) as info:
            det.detect_one(_input(_street_jpeg()))
    assert not isinstance(info.value, ServiceUnavailable)
    assert (
        ENDPOINT in info.value.message
        and "500" in info.value.message
        and "CUDA out of memory" in info.value.message
    )


def test_a_slow_endpoint_is_service_unavailable_after_the_read_timeout(server, monkeypatch):
    import time

    original = inference.predict_fn

    def slow(data, model):
        time.sleep(1.5)
        return original(data, model)

    monkeypatch.setattr(inference, "predict_fn", slow)
    with SageMakerDetector(
        ENDPOINT, endpoint_url=server.url, timeout_s=0.3, sdk_max_attempts=1, max_attempts=1
    ) as det:
        with pytest.raises(ServiceUnavailable) as info:
            det.detect_one(_input(_street_jpeg()))
    assert ENDPOINT in info.value.message and "no answer within 0.3 s" in info.value.message


def test_a_closed_port_is_service_unavailable_naming_the_endpoint(aws_env):
    url = f"http://127.0.0.1:{_free_port()}"
    sleeps: list[float] = []
    with SageMakerDetector(
        ENDPOINT, endpoint_url=url, sdk_max_attempts=1, max_attempts=2, sleep=sleeps.append
    ) as det:
        with pytest.raises(ServiceUnavailable) as info:
            det.detect_one(ImageInput(image=Image.new("RGB", (32, 32))))
    message = info.value.message
    assert ENDPOINT in message and url in message and "cannot connect" in message
    assert len(sleeps) == 1  # bounded: max_attempts - 1 back-offs, no more


def test_a_malformed_answer_is_a_detector_error(aws_env):
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    det = SageMakerDetector(ENDPOINT, sleep=lambda s: None)
    payload = b"<html>gateway</html>"
    with Stubber(det.client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(payload), len(payload)), "ContentType": "text/html"},
        )
        with pytest.raises(DetectorError) as info:
            det.detect_one(ImageInput(image=Image.new("RGB", (32, 32))))
    assert ENDPOINT in info.value.message and "gateway" in info.value.message
    det.close()


# -- SageMaker's own error shapes (the runtime front, which the local server does not emulate) --
def _stub_answer(payload: dict) -> dict:
    from botocore.response import StreamingBody

    body = json.dumps(payload).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def test_model_error_with_a_transient_status_is_retried_then_succeeds(aws_env):
    from botocore.stub import Stubber

    det = SageMakerDetector(ENDPOINT, thresholds=ClassThresholds(default=0.5), sleep=lambda s: None)
    answer = {
        "model_name": "m",
        "model_version": "v7",
        "detections": [
            {"class": "car", "label": "car", "score": 0.9, "box": [-5, 10, 40, 50]},
            {"class": "car", "label": "car", "score": 0.4, "box": [1, 1, 2, 2]},
            {"class": None, "label": "dog", "score": 0.95, "box": [1, 1, 9, 9]},
        ],
    }
    with Stubber(det.client) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            service_message="Received server error (503)",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 503, "OriginalMessage": "busy"},
        )
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ThrottlingException",
            service_message="Rate exceeded",
            http_status_code=400,
        )
        stub.add_response("invoke_endpoint", _stub_answer(answer))
        found = det.detect_one(ImageInput(image=Image.new("RGB", (32, 32))))
        stub.assert_no_pending_responses()
    # Thresholds applied again client-side, non-traffic labels dropped, boxes clipped.
    assert [(d.label, d.score, d.box) for d in found] == [("car", 0.9, (0.0, 10.0, 32.0, 32.0))]
    assert det.model_version == "v7"
    det.close()


def test_model_error_with_a_client_status_is_not_retried(aws_env):
    from botocore.stub import Stubber

    det = SageMakerDetector(ENDPOINT, sleep=lambda s: None)
    with Stubber(det.client) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            service_message="Received client error (415)",
            http_status_code=424,
            modeled_fields={
                "OriginalStatusCode": 415,
                "OriginalMessage": "Content type 'image/gif' is not supported",
                "LogStreamArn": "arn:aws:logs:eu-west-1:1:log-group:/aws/sagemaker/Endpoints/x",
            },
        )
        with pytest.raises(DetectorError) as info:
            det.detect_one(ImageInput(image=Image.new("RGB", (32, 32))))
        stub.assert_no_pending_responses()
    message = info.value.message
    assert (
        ENDPOINT in message
        and "415" in message
        and "image/gif" in message
        and "/aws/sagemaker/Endpoints/x" in message
    )
    det.close()


def test_an_answer_for_a_differently_oriented_picture_is_refused(aws_env):
    from botocore.stub import Stubber

    det = SageMakerDetector(ENDPOINT)
    with Stubber(det.client) as stub:
        stub.add_response(
            "invoke_endpoint",
            _stub_answer(
                {"model_name": "m", "model_version": "1", "image_size": [48, 64], "detections": []}
            ),
        )
        with pytest.raises(DetectorError, match="EXIF"):
            det.detect_one(ImageInput(image=Image.new("RGB", (64, 48))))
    det.close()


# -- the model server's own contract ---------------------------------------------------------
def _http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_ping_answers_200_with_the_model(server):
    status, _, body = _http(server.url + "/ping")
    assert status == 200
    assert json.loads(body)["model_version"] == server.model.model_version


def test_invocations_answers_the_shared_json_shape(server):
    data = _street_jpeg()
    status, headers, body = _http(
        server.url + "/invocations",
        data,
        {"Content-Type": "image/jpeg", "Accept": "application/json"},
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert set(answer) == {"model_name", "model_version", "image_size", "detections"}
    assert answer["image_size"] == list(Image.open(io.BytesIO(data)).size)
    for item in answer["detections"]:
        assert set(item) == {"class", "label", "score", "box"}
        assert (
            item["class"] == traffic_class_for(item["label"]).value and item["score"] >= THRESHOLD
        )


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b"hello", 415, "unsupported_media_type"),
        ("image/jpeg", b"\xff\xd8\xff\xe0 broken", 422, "image_undecodable"),
        ("image/png", b"", 415, "empty_body"),
        ("image/png", b"%PDF-1.4 not a picture", 415, "not_an_image"),
    ],
)
def test_invocation_errors_are_json_with_a_proper_status(server, content_type, body, status, code):
    got, headers, payload = _http(server.url + "/invocations", body, {"Content-Type": content_type})
    assert got == status
    error = json.loads(payload)["error"]
    assert error["code"] == code and error["message"]
    assert headers["x-amzn-ErrorType"] == code


def test_a_model_failure_is_a_500(server, monkeypatch):
    monkeypatch.setattr(inference, "predict_fn", _raiser(ValueError("bad tensor")))
    status, _, payload = _http(
        server.url + "/invocations", _street_jpeg(), {"Content-Type": "image/jpeg"}
    )
    assert status == 500 and "bad tensor" in json.loads(payload)["error"]["message"]


def test_unknown_routes_are_404(server):
    assert _http(server.url + "/nope")[0] == 404
    assert _http(server.url + "/predict", b"x", {"Content-Type": "image/jpeg"})[0] == 404


def test_a_server_whose_model_fails_to_load_answers_503(tmp_path, endpoint_env):
    missing = tmp_path / "no-model-here"
    srv = ModelServer(str(missing)).start(wait=False)
    try:
        srv._load_thread.join(timeout=60)
        assert srv.load_error is not None
        status, _, body = _http(srv.url + "/ping")
        assert status == 503 and json.loads(body)["error"]["code"] == "model_load_failed"
        status, _, body = _http(
            srv.url + "/invocations", _street_jpeg(), {"Content-Type": "image/jpeg"}
        )
        assert status == 503
    finally:
        srv.stop()
    with pytest.raises(Exception):  # noqa: B017 - whatever the loader raised, start() re-raises it
        ModelServer(str(missing)).start(wait=True)


def test_stop_releases_the_port(model_dir, endpoint_env):
    with ModelServer(str(model_dir)) as srv:
        port = srv.port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


# -- the inference script's functions --------------------------------------------------------
def test_model_fn_takes_per_class_thresholds_from_the_environment(model_dir, monkeypatch):
    monkeypatch.setenv("TRAFFIC_SCORE_THRESHOLD", str(THRESHOLD))
    monkeypatch.setenv("TRAFFIC_CLASS_THRESHOLDS", "car=0.99")
    monkeypatch.setenv("TRAFFIC_DETECTOR_RUNTIME", "torch")
    inference.settings.cache_clear()
    try:
        model = inference.model_fn(str(model_dir))
        picture = inference.input_fn(_street_jpeg(), "image/jpeg")
        answer = inference.predict_fn(picture, model)
    finally:
        inference.settings.cache_clear()
    classes = {item["class"] for item in answer["detections"]}
    assert "car" not in classes and {"person", "bus"} <= classes
    assert answer["model_version"] == model.model_version and answer["image_size"] == list(
        picture.size
    )


def test_input_fn_applies_exif_orientation(endpoint_env):
    picture = Image.new("RGB", (120, 80), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif.tobytes())
    assert inference.input_fn(buffer.getvalue(), "application/x-image").size == (80, 120)


@pytest.mark.parametrize("content_type", ["image/webp", "application/json", None])
def test_input_fn_refuses_other_content_types(endpoint_env, content_type):
    with pytest.raises(UnsupportedImage, match="not supported"):
        inference.input_fn(_street_jpeg(), content_type)


def test_input_fn_enforces_the_pixel_limit(monkeypatch):
    monkeypatch.setenv("TRAFFIC_MAX_PIXELS", "1000")
    inference.settings.cache_clear()
    try:
        with pytest.raises(PayloadTooLarge):
            inference.input_fn(_street_jpeg(), "image/jpeg")
    finally:
        inference.settings.cache_clear()


def test_input_fn_refuses_garbage(endpoint_env):
    with pytest.raises(DistortedImage, match="could not be decoded") as info:
        inference.input_fn(b"\x89PNG\r\n\x1a\n garbage", "image/png")
    assert info.value.code == "image_undecodable" and info.value.http_status == 422


def test_output_fn_refuses_a_non_json_accept():
    with pytest.raises(UnsupportedImage, match="application/json"):
        inference.output_fn({"detections": []}, "text/csv")
    assert json.loads(inference.output_fn({"detections": []}, "application/json, */*")) == {
        "detections": []
    }


def test_encoding_helpers():
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"\x89PNG\r\n\x1a\nxxxx") == "image/png"
    assert sniff_content_type(b"GIF89a") == "application/x-image"
    rgba = Image.new("RGBA", (10, 10), (1, 2, 3, 4))
    body, ctype = encode_for_endpoint(ImageInput(image=rgba))
    assert ctype == "image/jpeg" and Image.open(io.BytesIO(body)).mode == "RGB"


def _raiser(exc: BaseException):
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail
