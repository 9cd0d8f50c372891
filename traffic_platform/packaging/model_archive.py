"""The SageMaker ``model.tar.gz`` for the Hugging Face PyTorch inference container.

Layout (what the container's toolkit expects; it puts ``code/`` first on ``sys.path``)::

    config.json, model.safetensors, preprocessor_config.json, ...   the checkpoint
    code/inference.py        traffic_platform/detection/sagemaker_inference.py, unchanged
    code/traffic_platform/   the modules it imports (domain, detection, config, logs)
    code/requirements.txt    what the container installs at start: our transformers pin

The checkpoint comes from a directory or a hub id (``from_pretrained`` style); it must be
a transformers object-detection checkpoint, because the endpoint runs
:class:`~traffic_platform.detection.transformers_backend.TransformersDetector`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .archives import write_tar_gz
from .lambda_packages import PACKAGE_ROOT

ENDPOINT_PARTS = ("__init__.py", "py.typed", "config.py", "logs.py", "domain", "detection")
CHECKPOINT_SKIPPED = (".git", ".gitattributes", ".cache")
INFERENCE_SCRIPT = PACKAGE_ROOT / "detection" / "sagemaker_inference.py"


@dataclass(frozen=True)
class ModelArchive:
    path: Path
    size_bytes: int
    checkpoint: Path

    def describe(self) -> str:
        return f"SageMaker model: {self.path} {self.size_bytes / 2**20:.1f} MiB (checkpoint {self.checkpoint})"


def resolve_checkpoint(model: str, cache_dir: Path | None = None) -> Path:
    """A local directory as is; otherwise a hub id downloaded with ``snapshot_download``."""
    path = Path(model).expanduser()
    if path.is_dir():
        directory = path
    else:
        from huggingface_hub import snapshot_download

        try:
            directory = Path(snapshot_download(repo_id=model, cache_dir=cache_dir))
        except Exception as exc:
            raise ValueError(f"--model {model!r} is neither a directory nor a reachable hub id: {exc}") from None
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory} is not a transformers checkpoint (no config.json); "
                         "the endpoint runs transformers object-detection models")
    return directory


def requirements() -> str:
    """The container brings torch; our code needs the transformers release we test with."""
    return f"transformers=={metadata.version('transformers')}\ntzdata\n"


def build_model_archive(model: str, out: Path, *, cache_dir: Path | None = None) -> ModelArchive:
    checkpoint = resolve_checkpoint(model, cache_dir)
    with tempfile.TemporaryDirectory(prefix="model-archive-") as tmp:
        stage = Path(tmp)
        for item in sorted(checkpoint.iterdir()):
            if item.name in CHECKPOINT_SKIPPED or item.name == "code":
                continue
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, stage / item.name)
        code = stage / "code"
        code.mkdir()
        shutil.copyfile(INFERENCE_SCRIPT, code / "inference.py")
        for part in ENDPOINT_PARTS:
            src = PACKAGE_ROOT / part
            if src.is_dir():
                shutil.copytree(src, code / "traffic_platform" / part,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                (code / "traffic_platform").mkdir(exist_ok=True)
                shutil.copyfile(src, code / "traffic_platform" / part)
        (code / "requirements.txt").write_text(requirements(), encoding="utf-8")
        path = write_tar_gz(stage, out)
    return ModelArchive(path, path.stat().st_size, checkpoint)
