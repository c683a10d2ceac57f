"""Waiting for actors and tasks that may need a node the cluster does not have yet.

On a cluster a GPU node starts cold (instance boot, image pull: many minutes). The
driver waits as long as ``runtime.startup_timeout_s`` allows and says, every
``REPORT_EVERY_S``, what it is waiting for and what the cluster offers right now.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from orchestrator.capacity import autoscaler_activity
from orchestrator.errors import UserError

REPORT_EVERY_S = 30.0


def _offer() -> str:
    import ray

    try:
        free = ray.available_resources()
    except Exception:  # a status line must never break the wait
        return "unknown"
    shown = {k: v for k, v in free.items() if k in ("CPU", "GPU") or not k.startswith("node:")}
    shown = {k: v for k, v in shown.items() if "memory" not in k}
    offer = ", ".join(f"{k} {v:g}" for k, v in sorted(shown.items())) or "nothing"
    return offer + autoscaler_activity()


def wait_for_refs(
    named: dict[str, Any],
    *,
    timeout_s: float,
    demand: dict[str, float] | None = None,
    report_every_s: float = REPORT_EVERY_S,
) -> None:
    """Block until every ref in ``named`` (what -> ObjectRef) is ready, reporting the
    ones still pending; ``UserError`` after ``timeout_s``. Readiness includes failure:
    the caller's ``ray.get`` raises it."""
    import ray

    start = time.monotonic()
    pending = dict(named)
    while pending:
        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            raise UserError(
                f"gave up after {elapsed:.0f} s waiting for {', '.join(pending)}"
                f"{_needs(demand)}; the cluster offers {_offer()} (see `ray status`; "
                "raise runtime.startup_timeout_s for slow nodes)"
            )
        refs = list(pending.values())
        ready, _ = ray.wait(
            refs,
            num_returns=len(refs),
            timeout=min(report_every_s, timeout_s - elapsed),
            fetch_local=False,
        )
        done = set(ready)
        pending = {what: ref for what, ref in pending.items() if ref not in done}
        if pending:
            print(
                f"[antray] waiting {time.monotonic() - start:.0f} s for {', '.join(pending)}"
                f"{_needs(demand)}; the cluster offers {_offer()} "
                "(a cold GPU node takes minutes to boot)",
                file=sys.stderr,
                flush=True,
            )


def _needs(demand: dict[str, float] | None) -> str:
    if not demand:
        return ""
    shown = {k: v for k, v in demand.items() if v > 0}
    return f" (needs {', '.join(f'{k} {v:g}' for k, v in sorted(shown.items()))})" if shown else ""
