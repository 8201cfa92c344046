"""The tflite target: options, exporter and checks."""
