"""Detectors (in-process transformers, ONNX end-to-end graphs, SageMaker endpoints) and annotation."""
