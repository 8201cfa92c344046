"""The device side of the parity protocol (docs/device-parity.md): NumPy and a runtime, no torch,
no PIL."""
