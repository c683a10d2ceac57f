"""First Ctrl-C (or SIGTERM, which is how `ray job stop` stops a job): finish the current
step, write a checkpoint, stop. Second: abort."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

# SIGTERM: `ray job stop` sends it to the driver and, RAY_JOB_STOP_WAIT_TIME_S later
# (3 s by default; cluster.yaml sets more), SIGKILL.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        print(
            f"\nantray: {name}: stopping after the current step and writing a checkpoint "
            "(Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        request_stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, action in previous.items():
            if action is not None:  # None: a handler installed outside Python
                signal.signal(sig, action)
