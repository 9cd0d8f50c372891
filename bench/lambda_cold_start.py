"""The first request of a fresh ingest Lambda, end to end, against a minimal Python Lambda.

    .venv/bin/python bench/lambda_cold_start.py                 # 10 fresh interpreters each
    .venv/bin/python bench/lambda_cold_start.py --runs 5 --record

What a cold ingest function does before its first answer: start the interpreter, import the
handler from the **built package** (``traffic-platform deploy build``'s tree, for this
interpreter; torch, pandas and Dagster cannot be imported), read the settings, create the
boto3 clients (S3, SQS, SageMaker runtime), and serve one ``POST /v1/images`` (API Gateway v2
event): decode, quality gate, **one SageMaker call** (the local endpoint stand-in,
``detection/model_server.py``, warm), the SQS hand-off. S3 and SQS are moto's server.

Baseline, same run: the least any Python function that hands a message to SQS does — a fresh
interpreter importing boto3, creating an SQS client and sending one message. Target (issue
19): ours ≤ 1 s. Compare only within one run (shared 2-core hosts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REGION = "eu-west-1"
ENDPOINT = "traffic-bench-detector"

OURS = r"""
import base64, json, sys, time
t0 = time.perf_counter()
sys.path[:] = [sys.argv[1], *[p for p in sys.path if "site-packages" not in p], sys.argv[2]]
from traffic_platform.ingest import lambda_handlers as lh
t_import = time.perf_counter()
data = open(sys.argv[3], "rb").read()
def event(name):
    return {"version": "2.0", "rawPath": "/v1/images", "headers": {"content-type": "image/jpeg"},
            "queryStringParameters": {"filename": name}, "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
            "requestContext": {"http": {"method": "POST", "path": "/v1/images"}, "stage": "$default"}}
lh._ingest_api()  # what the first invocation builds: settings, clients, detector, repository
t_api = time.perf_counter()
first = lh.ingest_handler(event("cold_Leuven_Belgium_01-02-2024_10-00-00.jpg"))
t_first = time.perf_counter()
answered_at = time.time()
second = lh.ingest_handler(event("warm_Leuven_Belgium_01-02-2024_10-00-01.jpg"))
t_second = time.perf_counter()
heavy = [m for m in ("torch", "transformers", "pandas", "pyarrow", "onnxruntime", "dagster") if m in sys.modules]
print(json.dumps({"import_ms": (t_import - t0) * 1e3, "build_ms": (t_api - t_import) * 1e3,
                  "first_ms": (t_first - t_api) * 1e3, "answered_at": answered_at,
                  "second_ms": (t_second - t_first) * 1e3, "status": [first["statusCode"], second["statusCode"]],
                  "timings": json.loads(first["body"]).get("timings_ms"), "heavy": heavy,
                  "error": json.loads(first["body"]).get("error")}))
"""

BASELINE = r"""
import json, sys, time
import boto3
client = boto3.client("sqs", region_name=sys.argv[2])
client.send_message(QueueUrl=sys.argv[1], MessageBody="x")
print(json.dumps({"answered_at": time.time()}))
"""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def street_jpeg() -> bytes:
    """A real street photo when ../shared has one (about 130 KB), else a generated scene."""
    photos = sorted((ROOT.parent / "shared" / "data" / "street").glob("bdd100k_*.jpg"))
    if photos:
        return photos[0].read_bytes()
    from traffic_platform.demo import synthetic_street

    return synthetic_street(seed=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh interpreters per row")
    parser.add_argument("--model", help="transformers checkpoint for the endpoint (default: a tiny DETR)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)

    import boto3
    from moto.server import ThreadedMotoServer

    from traffic_platform.detection.model_server import ModelServer
    from traffic_platform.detection.tiny_models import build_tiny_detr
    from traffic_platform.packaging.lambda_packages import build_lambda_package

    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(name, value)
    work = Path(tempfile.mkdtemp(prefix="bench-lambda-"))
    print("building the ingest package for this interpreter ...", file=sys.stderr, flush=True)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    package = build_lambda_package("ingest", work / "build", wheel_cache=work / "wheels", python_version=here)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_url = "http://{}:{}".format(*moto.get_host_and_port())
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    queue_url = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    image = work / "street.jpg"
    image.write_bytes(street_jpeg())
    model_dir = args.model or str(build_tiny_detr(work / "tiny-detr"))
    site = str(Path(boto3.__file__).parents[1])
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_url, "TRAFFIC_DETECTOR": f"sagemaker:{ENDPOINT}",
           "TRAFFIC_QUEUE_URL": queue_url, "TRAFFIC_OBJECT_STORE_URI": f"s3://{bucket}",
           "TRAFFIC_DATABASE_URL": f"sqlite:///{work / 'unused.db'}", "TRAFFIC_HOME": str(work / "home"),
           "TRAFFIC_LOG_LEVEL": "WARNING", "PYTHONDONTWRITEBYTECODE": "1"}
    ours, baseline = [], []
    with ModelServer(model_dir, "127.0.0.1", 0, endpoint_name=ENDPOINT) as server:
        env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = server.url
        import urllib.request

        warm = urllib.request.Request(f"{server.url}/invocations", data=image.read_bytes(), headers={"Content-Type": "image/jpeg"})
        urllib.request.urlopen(warm, timeout=120).read()  # the endpoint is warm; the function is not
        for _ in range(args.runs):  # interleaved, so that load from other processes hits both alike
            spawned = time.time()
            out = subprocess.run([sys.executable, "-I", "-c", OURS, str(package.directory), site, str(image)],
                                 env=env, capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if row["status"] != [201, 201] or row["heavy"]:
                print(f"unexpected: {row}", file=sys.stderr)
                return 1
            ours.append({**row, "cold_ms": (row["answered_at"] - spawned) * 1e3})
            spawned = time.time()
            base = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.append({site!r})\n" + BASELINE,
                                   queue_url, REGION], env=env, capture_output=True, text=True, timeout=120)
            baseline.append({"cold_ms": (json.loads(base.stdout.strip().splitlines()[-1])["answered_at"] - spawned) * 1e3})
    moto.stop()

    cold = p50([r["cold_ms"] for r in ours])
    floor = p50([r["cold_ms"] for r in baseline])
    detect = p50([r["timings"]["detect_ms"] for r in ours])
    lines = [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); Python {platform.python_version()}; "
        f"{dt.date.today().isoformat()}; {args.runs} fresh interpreters per row, interleaved; "
        f"package {package.unzipped_bytes / 2**20:.0f} MiB; endpoint model {'tiny DETR' if not args.model else args.model} (warm).",
        "",
        "| what (fresh interpreter, p50) | ms |",
        "|---|---|",
        f"| baseline: process start to one SQS message sent (import boto3, one client) | {floor:.0f} |",
        f"| ours: import the handler from the package | {p50([r['import_ms'] for r in ours]):.0f} |",
        f"| ours: build the function's Api (settings, SQS/SageMaker clients; the S3 client and the engine are made when a route needs them) | {p50([r['build_ms'] for r in ours]):.0f} |",
        f"| ours: the first request (decode, gate, SageMaker call {detect:.0f} ms, SQS) | {p50([r['first_ms'] for r in ours]):.0f} |",
        f"| ours: the second request, same container | {p50([r['second_ms'] for r in ours]):.0f} |",
        f"| **ours: process start to the first answer** | **{cold:.0f}** |",
        "",
        f"Cold first answer {cold:.0f} ms = {cold / floor:.1f}× the baseline; target ≤ 1000 ms: "
        f"{'met' if cold <= 1000 else 'NOT met'}.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## Ingest Lambda cold start (`bench/lambda_cold_start.py`)\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
