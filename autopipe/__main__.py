"""`python -m autopipe` is the same as the `autopipe` console script."""

from autopipe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
