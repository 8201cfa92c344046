"""Benchmarks on devices: runners, timing, device parity, reports.

Calling this package, ``edgesam_deploy.bench(DIR, device)``, is ``edgesam_deploy.api.bench(...)``.
"""

from ..api_callable import make_callable

make_callable(__name__)
