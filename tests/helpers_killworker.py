"""Child process for the SIGKILL test: trains one method on tiny data, printing progress.

Usage: python helpers_killworker.py METHOD DATA_ROOT RUN_DIR HOME SEED [--pause-before-rename]

Prints ``iter N`` (flushed) after every finished iteration so the parent can kill it at an
exact point, and with ``--pause-before-rename`` prints ``rename`` and sleeps when a checkpoint's
temporary file has been written but not yet renamed into place (the parent kills it there).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers_methods import tiny_data, tiny_run  # noqa: E402

from benchmark.core import atomic, registry  # noqa: E402
from benchmark.core.profiles import apply_overrides  # noqa: E402
from benchmark.pipeline.training import train  # noqa: E402

SETTINGS = {"checkpoint_every": "3"}


def main() -> None:
    method_name, data_root, run_dir, home, seed = sys.argv[1:6]
    pause = "--pause-before-rename" in sys.argv
    torch.set_num_threads(1)
    cls = registry.methods.get(method_name)
    method = cls(apply_overrides(cls.default_config("ci"), SETTINGS), "cpu")
    real_step = method.train_step

    def step(batch, it):
        out = real_step(batch, it)
        print(f"iter {it + 1}", flush=True)
        return out

    method.train_step = step
    if pause:
        real_replace = os.replace

        def slow_replace(src, dst):
            if str(dst).endswith("last.pt"):
                print("rename", flush=True)
                time.sleep(60)  # the parent kills us here
            return real_replace(src, dst)

        atomic.os.replace = slow_replace  # type: ignore[attr-defined]
    data = tiny_data(Path(data_root))
    done = train(method, data, tiny_run(Path(run_dir), Path(home), seed=int(seed), deterministic=True))
    print(f"finished {done}", flush=True)


if __name__ == "__main__":
    main()
