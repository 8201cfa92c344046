"""Calibration data and precision policies shared by the ONNX, TFLite and Core ML quantizers."""

FP16_MAX = 65504.0  # largest finite float16
