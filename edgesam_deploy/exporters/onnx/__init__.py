"""The onnx target: options, exporter and checks."""
