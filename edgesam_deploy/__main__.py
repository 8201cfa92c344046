"""``python -m edgesam_deploy`` and the console script: Ctrl-C while torch loads is one line too."""
import sys


def run() -> None:
    """Import the CLI (seconds: torch) and run it; an interrupt during start-up exits 130."""
    from .testhook import hook

    try:
        hook("startup")
        from .cli.app import main
    except KeyboardInterrupt:
        print("edgesam-deploy: interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
