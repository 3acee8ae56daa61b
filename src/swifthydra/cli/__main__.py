"""``python -m swifthydra.cli``: the ``swifthydra`` command line."""

from swifthydra.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
