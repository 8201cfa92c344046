"""The coreml target: options, exporter and checks."""
