"""Calibration data and precision policies shared by the ONNX, TFLite and Core ML quantizers."""
