"""The executorch target: options, rewrites, lowering, int8 quantization, exporter and checks."""
