"""`tripletlab train --nproc N`: the same training through torchrun, N processes here."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tripletlab.config import RunConfig
from tripletlab.index._faiss import machine_cores
from tripletlab.runs import RunDir
from tripletlab.training.distributed import launched_world_size


def torchrun_train(
    nproc: int,
    imports: list[str],
    *,
    config: RunConfig | None = None,
    resume: Path | None = None,
    run_dir: Path | None = None,
    report: bool = True,
) -> int:
    """Run `tripletlab train` in `nproc` processes on this machine under torchrun
    (`python -m torch.distributed.run --standalone`, through `_torchrun`) and wait; returns
    its exit status. The run folder is checked here first.

    The children train the resolved `config` (written to a temporary YAML file) or resume the
    run `resume`. Each gets `OMP_NUM_THREADS` = cores // nproc unless it is set: processes
    that together spin more threads than there are cores run several times slower.

    Raises:
        ValueError: nproc below 1, called inside a torchrun job, a run folder that is not
            empty (or, resuming, not a run).
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if launched_world_size() > 1:
        raise ValueError("--nproc starts torchrun; inside a torchrun job leave it out")
    if resume is not None:
        RunDir.open(resume)  # a missing run is said here, once, not by every process
    else:
        RunDir.check_new(run_dir)
    command = [sys.executable, "-m", "tripletlab.cli.launch", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "tripletlab"]  # fmt: skip
    for module in imports:
        command += ["--import", module]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, machine_cores() // nproc)))
    with tempfile.TemporaryDirectory(prefix="tripletlab-nproc-") as folder:
        if resume is not None:
            arguments = ["--resume", str(resume)]
        else:
            assert config is not None, "a config or a run to resume"
            path = Path(folder) / "settings.yaml"
            path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            arguments = ["--config", str(path)]
            arguments += ["--run-dir", str(run_dir)] if run_dir is not None else []
        arguments += [] if report else ["--no-report"]
        return subprocess.call([*command, "train", *arguments], env=env)


def _torchrun(arguments: list[str]) -> int:
    """torchrun with `arguments`; a failed process ends it with one line naming it (its own
    error is printed above by the process itself), not torchrun's traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(arguments))
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        print(f"error: process {rank} of the job failed first (exit code {failure.exitcode}); "
              "its error is above", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))
