"""``traffic-platform deploy build``: Lambda packages and model.tar.gz, light, reproducible, runnable."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from traffic_platform.packaging.lambda_packages import (
    FORBIDDEN,
    LAMBDA_PYTHON,
    build_lambda_package,
)
from traffic_platform.packaging.model_archive import build_model_archive

HERE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"

# Runs the built package in a fresh interpreter: only the package and boto3 (the runtime's own)
# importable; torch, pandas, Dagster and the rest refused; every module of ours from the package.
PROBE = r"""
import importlib.abc, json, sys
package, site = sys.argv[1], sys.argv[2]
FORBIDDEN = tuple(json.loads(sys.argv[3]))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not in a Lambda package")
sys.meta_path.insert(0, Refuse())
sys.path[:] = [package, *[p for p in sys.path if "site-packages" not in p], site]
import traffic_platform.ingest.lambda_handlers as handlers
import traffic_platform.ingest.persist, traffic_platform.detection.sagemaker, traffic_platform.storage.repository
import traffic_platform.ingest.counts_api, traffic_platform.domain.quality, numpy, PIL.Image, sqlalchemy, pymysql
event = {"httpMethod": "GET", "path": "/healthz", "headers": {}, "requestContext": {"stage": "v1"}}
from traffic_platform.ingest.api import Api
answer = handlers.ingest_handler(event, api=Api(service=None, lookup=None))
ours = {m: getattr(sys.modules[m], "__file__", "") or "" for m in sys.modules if m.split(".")[0] in ("traffic_platform", "numpy", "PIL", "sqlalchemy")}
print(json.dumps({"answer": answer, "outside": sorted(m for m, f in ours.items() if f and not f.startswith(package))}))
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheels")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_packages_target_the_templates_runtime():
    assert f"Runtime: python{LAMBDA_PYTHON}" in TEMPLATE.read_text()
    assert "CodeUri: ../build/ingest/" in TEMPLATE.read_text() and "CodeUri: ../build/persist/" in TEMPLATE.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ingest", "persist"])
def test_a_lambda_package_is_light_reproducible_and_runs_without_heavy_dependencies(tmp_path, wheels, name):
    first = build_lambda_package(name, tmp_path / "a", wheel_cache=wheels, python_version=HERE_PYTHON)
    again = build_lambda_package(name, tmp_path / "b", wheel_cache=wheels, python_version=HERE_PYTHON)
    assert sha256(first.zip_path) == sha256(again.zip_path)  # byte-reproducible
    names = zipfile.ZipFile(first.zip_path).namelist()
    assert "traffic_platform/ingest/lambda_handlers.py" in names and "numpy/__init__.py" in names
    assert not [n for n in names if n.split("/")[0] in (*FORBIDDEN, "boto3", "botocore")]
    assert not [n for n in names if n.startswith(("traffic_platform/orchestration", "traffic_platform/packaging"))]
    assert first.unzipped_bytes < 250 * 2**20 and first.zip_bytes < 50 * 2**20
    import boto3

    site = str(Path(boto3.__file__).parents[1])
    probe = subprocess.run([sys.executable, "-I", "-c", PROBE, str(first.directory), site, json.dumps(FORBIDDEN)],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["outside"] == []  # our code and its wheels came from the package
    assert result["answer"]["statusCode"] == 200 and json.loads(result["answer"]["body"]) == {"status": "ok"}


@pytest.mark.slow
def test_the_model_archive_has_the_containers_layout_and_serves(tmp_path, tiny_detr_dir):
    archive = build_model_archive(str(tiny_detr_dir), tmp_path / "a" / "model.tar.gz")
    again = build_model_archive(str(tiny_detr_dir), tmp_path / "b" / "model.tar.gz")
    assert sha256(archive.path) == sha256(again.path)
    with tarfile.open(archive.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {m.mtime for m in members.values()} == {0} and {m.uid for m in members.values()} == {0}
        assert {"config.json", "code/inference.py", "code/requirements.txt",
                "code/traffic_platform/detection/transformers_backend.py"} <= set(members)
        assert not [n for n in members if n.startswith("code/traffic_platform/orchestration")]
        requirements = tar.extractfile("code/requirements.txt").read().decode()
        tar.extractall(tmp_path / "unpacked", filter="data")
    import transformers

    assert f"transformers=={transformers.__version__}" in requirements
    # what the container does: code/ first on sys.path, then model_fn / input_fn / predict_fn / output_fn
    unpacked = tmp_path / "unpacked"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1] + '/code'); import inference, traffic_platform\n"
        "assert traffic_platform.__file__.startswith(sys.argv[1]), traffic_platform.__file__\n"
        "model = inference.model_fn(sys.argv[1])\n"
        "body = inference.output_fn(inference.predict_fn(inference.input_fn(open(sys.argv[2], 'rb').read(), 'image/png'), model), 'application/json')\n"
        "print(body)"
    )
    image = tmp_path / "street.png"
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 130, 140)).save(buf, "PNG")
    image.write_bytes(buf.getvalue())
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRAFFIC_SCORE_THRESHOLD": "0.0"}
    run = subprocess.run([sys.executable, "-c", script, str(unpacked), str(image)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["image_size"] == [96, 64] and isinstance(answer["detections"], list)
    assert answer["model_version"]


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        build_model_archive(str(tmp_path / "empty"), tmp_path / "model.tar.gz")


def test_the_cli_reports_a_failed_build_with_its_code(tmp_path, capsys, monkeypatch):
    from traffic_platform.cli import main
    from traffic_platform.packaging import build

    def no_wheel(*_args, **_kwargs):
        raise RuntimeError("pip download ... failed: No matching distribution found for pillow==13.0.0")

    monkeypatch.setattr(build, "build_lambda_package", no_wheel)
    assert main(["deploy", "build", "--out", str(tmp_path / "out")]) == 2
    assert "deploy_build_failed: pip download" in capsys.readouterr().err
