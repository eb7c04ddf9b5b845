"""Exporting trained models: ONNX (optionally int8-quantized and graph-optimised) with a parity report."""

from .exporter import ExportResult, export_model, format_export_report

__all__ = ["ExportResult", "export_model", "format_export_report"]
