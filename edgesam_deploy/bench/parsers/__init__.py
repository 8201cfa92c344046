"""Parsers of device tools' text output (benchmark_model, trtexec, adb), tested on recorded outputs."""
