"""How a calibrated index treats MNIST digits its run never saw: the share of unseen test
digits that come back "unknown", and of seen ones that are answered (and answered right),
at each calibrated precision.

    tripletlab train --set 'data.classes=[0,1,2,3,4]' --run-dir runs/digits04
    tripletlab index build runs/digits04
    tripletlab index calibrate runs/digits04/index
    python scripts/open_set.py runs/digits04
"""

from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table

from tripletlab.data import load_mnist
from tripletlab.search import Searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--index", default=None, help="index folder [RUN_DIR/index]")
    args = parser.parse_args()
    searcher = Searcher(args.run_dir, args.index)
    if searcher.index.calibration is None:
        raise SystemExit("error: calibrate the index first: tripletlab index calibrate INDEX_DIR")
    index = searcher.index
    seen = {int(index.class_names[y]) for y in np.unique(index.items.labels)}  # MNIST: "0".."9"
    test = load_mnist("test")
    known = np.isin(test.labels, list(seen))
    if known.all():
        raise SystemExit("error: the run saw every digit; train it on some (data.classes)")
    vectors = searcher.embedder.embed(test.images)
    table = Table(title=f"MNIST test: {known.sum():,} digits seen in training "
                        f"({sorted(seen)}), {(~known).sum():,} never seen")  # fmt: skip
    for column in ("precision", "threshold", "unseen: unknown", "seen: answered",
                   "seen: right when answered"):  # fmt: skip
        table.add_column(column, justify="right")
    for threshold in index.calibration.thresholds:
        if threshold.distance is None:
            continue
        matches = index.match(vectors, threshold=threshold.distance)
        answered = matches.labels >= 0
        digits = np.array([int(index.class_names[y]) if y >= 0 else -1 for y in matches.labels])
        right = (digits == test.labels)[known & answered].mean()
        table.add_row(f"{threshold.target:g}", f"{threshold.distance:.4f}",
                      f"{(~answered)[~known].mean():.3f}", f"{answered[known].mean():.3f}",
                      f"{right:.4f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
