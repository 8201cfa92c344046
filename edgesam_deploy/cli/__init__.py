"""The ``edgesam-deploy`` command line (Typer + rich)."""
