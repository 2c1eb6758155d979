"""Quality of each preset against the TF Addons tutorial's recipe, measured in the same run.

Three workloads, each recipe trained with every seed through the real command line
(`tripletlab train ... --seed S`, one process per run, the metrics read from its
`metrics.json`; the test set is what they are measured on):

- `mnist`: the tutorial's recipe (`tripletlab train`), `--preset fast`, `--preset accurate`;
- `fashion`: Fashion-MNIST, the tutorial's recipe, `fast`, `accurate` and `--preset fashion`;
- `unseen`: Fashion-MNIST trained on classes 0-4 (T-shirt/top to Coat) and tested on 5-9
  (Sandal, Shirt, Sneaker, Bag, Ankle boot), never seen in training ("A Metric Learning Reality
  Check"): the tutorial's recipe, `fast`, `accurate` and `--preset unseen`.

Each preset's goal (issue 21) is checked on every seed and printed as met or not. All of it
takes about an hour on 2 CPU cores; `--only` and `--seeds` run a part.
Run: `make quality` or `python benchmarks/quality.py [--only mnist fashion unseen]
[--seeds 0 1 2] [--json runs.jsonl]` (`--json` appends each run as a JSON line as it ends).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import console, show

UNSEEN_SPLIT = ("--dataset", "fashion-mnist", "--train-classes", "0-4", "--test-classes", "5-9")


@dataclass(frozen=True)
class Recipe:
    """One recipe of a workload: its flags and its goals (metric -> lowest value, every seed)."""

    name: str
    flags: tuple[str, ...]
    goals: tuple[tuple[str, float], ...] = ()
    max_train_seconds: float | None = None


FAST = Recipe("fast", ("--preset", "fast"))
ACCURATE = Recipe("accurate", ("--preset", "accurate"))
WORKLOADS: dict[str, tuple[tuple[str, ...], tuple[Recipe, ...]]] = {
    "mnist": ((), (
        Recipe("tutorial", ()),
        Recipe("fast", FAST.flags, (("precision_at_1", 0.99),), 60.0),
        Recipe("accurate", ACCURATE.flags, (("precision_at_1", 0.995), ("map_at_r", 0.99))),
    )),
    "fashion": (("--dataset", "fashion-mnist"), (
        Recipe("tutorial", ()), FAST, ACCURATE,
        Recipe("fashion", ("--preset", "fashion"),
               (("precision_at_1", 0.93), ("map_at_r", 0.85)), 600.0),
    )),
    "unseen": (UNSEEN_SPLIT, (
        Recipe("tutorial", ()), FAST, ACCURATE,
        Recipe("unseen", ("--preset", "unseen"), (("map_at_r", 0.40),), 600.0),
    )),
}  # fmt: skip
METRICS = ("precision_at_1", "r_precision", "map_at_r")


def train(flags: list[str], folder: Path) -> dict[str, float]:
    """Run `tripletlab train` with `flags` into `folder`; its metrics and training time.

    Raises:
        RuntimeError: the command failed (its last output lines are in the message).
    """
    command = [sys.executable, "-m", "tripletlab", "train", *flags, "--no-report", "--run-dir",
               str(folder)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")
    metrics = json.loads((folder / "metrics.json").read_text())
    return {key: float(metrics[key]) for key in (*METRICS, "train_seconds")}


def run_workload(
    name: str, seeds: list[int], scratch: Path, log: Path | None
) -> list[dict[str, object]]:
    """Every recipe of workload `name` with every seed; one row per run, each also appended to
    `log` (JSON lines) as soon as it is measured."""
    data_flags, recipes = WORKLOADS[name]
    rows: list[dict[str, object]] = []
    for seed in seeds:  # seeds outermost: recipes alternate, so a slow spell hits all of them
        for recipe in recipes:
            folder = scratch / f"{name}-{recipe.name}-{seed}"
            flags = [*data_flags, *recipe.flags, "--seed", str(seed)]
            console.print(f"[dim]{name} / {recipe.name} / seed {seed}: tripletlab train "
                          f"{' '.join(flags)}[/dim]")  # fmt: skip
            result = train(flags, folder)
            shutil.rmtree(folder, ignore_errors=True)
            rows.append({"workload": name, "recipe": recipe.name, "seed": seed, **result})
            if log is not None:
                with log.open("a") as out:
                    out.write(json.dumps(rows[-1]) + "\n")
    return rows


def report(name: str, rows: list[dict[str, object]]) -> list[str]:
    """Print workload `name`'s runs and each recipe's summary; the goal lines (met or not)."""
    _, recipes = WORKLOADS[name]
    show(f"{name}: every run (test set)", ["recipe", "seed", "P@1", "R-Precision", "MAP@R",
         "train s"], [[r["recipe"], r["seed"], *(r[m] for m in METRICS), r["train_seconds"]]
                      for r in rows])  # fmt: skip
    reference = [float(r["map_at_r"]) for r in rows if r["recipe"] == "tutorial"]
    ref_map = sum(reference) / len(reference) if reference else float("nan")
    summary, goals = [], []
    for recipe in recipes:
        mine = [r for r in rows if r["recipe"] == recipe.name]
        if not mine:
            continue
        means = {m: sum(float(r[m]) for r in mine) / len(mine) for m in METRICS}
        lows = {m: min(float(r[m]) for r in mine) for m in METRICS}
        summary.append([recipe.name, len(mine), means["precision_at_1"], lows["precision_at_1"],
                        means["map_at_r"], lows["map_at_r"],
                        means["map_at_r"] / ref_map,
                        max(float(r["train_seconds"]) for r in mine)])  # fmt: skip
        for metric, low in recipe.goals:
            met = lows[metric] >= low
            goals.append(f"{name} / {recipe.name}: {metric} >= {low} on every seed: "
                         f"{'met' if met else 'NOT met'} (lowest {lows[metric]:.4f})")  # fmt: skip
        if recipe.max_train_seconds is not None:
            slowest = max(float(r["train_seconds"]) for r in mine)
            goals.append(f"{name} / {recipe.name}: training <= {recipe.max_train_seconds:.0f} s: "
                         f"{'met' if slowest <= recipe.max_train_seconds else 'NOT met'} "
                         f"(slowest {slowest:.1f} s)")  # fmt: skip
    show(f"{name}: each recipe over its seeds", ["recipe", "seeds", "P@1", "P@1 min", "MAP@R",
         "MAP@R min", "x tutorial", "max s"], summary)  # fmt: skip
    return goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None,
                        help="also append every run here (JSON lines), as it ends")  # fmt: skip
    args = parser.parse_args()
    goals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tripletlab-quality-") as scratch:
        for name in args.only:
            goals.extend(report(name, run_workload(name, args.seeds, Path(scratch), args.json)))
    for line in goals:
        console.print(line)


if __name__ == "__main__":
    main()
