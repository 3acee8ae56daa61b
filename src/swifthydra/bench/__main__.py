"""``python -m swifthydra.bench``: the benchmark commands without the rest of the CLI."""

from swifthydra.bench.cli import make_app

if __name__ == "__main__":
    make_app()()
