"""Run a module under cProfile switched on and off by signals (bench/profile_gateway.py).

    python bench/profiled_child.py OUT -m modelyard.cli serve ...

SIGUSR1 starts profiling the main thread (the event loop's), SIGUSR2 stops it
and writes the profile to OUT: so a profile holds the measured calls only, not
the imports, the start-up and the warm-up.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from types import FrameType


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: profiled_child.py OUT -m MODULE [ARGS...]")
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
