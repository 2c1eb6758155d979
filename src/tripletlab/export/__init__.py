"""Exporters: TensorBoard Embedding Projector files."""

from tripletlab.export.projector import export_projector, export_run_projector

__all__ = ["export_projector", "export_run_projector"]
