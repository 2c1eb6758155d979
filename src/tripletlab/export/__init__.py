"""Exporters: TensorBoard Embedding Projector files, and ONNX (`tripletlab.export.onnx`, which
needs the `onnx` extra and is imported on demand)."""

from tripletlab.export.projector import export_projector, export_run_projector

__all__ = ["export_projector", "export_run_projector"]
