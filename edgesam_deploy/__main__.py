"""``python -m edgesam_deploy`` (used by the ssh runner on boards without the console script)."""
from .cli.app import main

main()
