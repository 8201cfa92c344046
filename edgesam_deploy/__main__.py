"""``python -m edgesam_deploy`` and the console script: Ctrl-C while torch loads is one line too."""

import sys


def run() -> None:
    """Import the CLI (seconds: torch) and run it; an interrupt during start-up exits 130. Other
    libraries' output is captured from before their import (``terminal.session``)."""
    from .terminal import INTERRUPTED_LINE, Level, session
    from .testhook import hook

    with session(Level.from_args(sys.argv[1:])) as terminal:
        try:
            hook("startup")
            from .cli.app import main
        except KeyboardInterrupt:
            print(INTERRUPTED_LINE, file=terminal.stream)
            sys.exit(130)
        main()


if __name__ == "__main__":
    run()
