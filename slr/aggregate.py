"""One table of every run under a sweep or output directory: `python -m slr.aggregate DIR`.

Columns: the overrides that differ between runs, val and test top-1/top-5, epochs, wall time and
status; the best run by val top-1 is marked. Runs that differ only in `seed` are folded into one
row of mean ± std. Prints Markdown and writes DIR/aggregate.md and DIR/aggregate.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slr.runs.aggregate import aggregate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slr.aggregate", description=__doc__)
    parser.add_argument("dir", type=Path, help="a sweep (multirun/...) or output directory")
    args = parser.parse_args(argv)
    try:
        text = aggregate(args.dir)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(text, end="")
    print(f"\nwritten: {args.dir / 'aggregate.md'}, {args.dir / 'aggregate.csv'}")


if __name__ == "__main__":
    main()
