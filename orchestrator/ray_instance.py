"""The Ray instance a run uses: antray's own (one machine, never another Ray already
running there) or a cluster it joins, and the head marker that keeps the replay store, the
stop flag and Tune's trial drivers on the head node. The checks before a run
(``preflight.py``) and the runners (``ray_runner.py``, ``tune_runner.py``, ``eval_runner.py``)
all start or join Ray here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.errors import UserError

# A sliver of the head marker resource per pinned actor or trial driver; the head offers
# HEAD_RESOURCE_AMOUNT, so a thousand of them fit.
HEAD_SLIVER = 0.001
HEAD_RESOURCE_AMOUNT = 1.0

# Inside a Tune trial, actors would otherwise be captured by the trial's placement group.
OUTSIDE_ANY_PLACEMENT_GROUP = "DEFAULT"
DEFAULT_HEAD_RESOURCE = "antray_head"

PROBE_TIMEOUT_S = 5.0
STATE_API_TIMEOUT_S = 60.0


def probe_address(address: str) -> None:
    """Fail in seconds, not minutes, when ``host:port`` or ``ray://host:port`` does not
    answer (``ray.init`` retries an unreachable GCS for a long time)."""
    if address == "auto":
        return  # ray.init finds the local cluster file or raises at once
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def joins_cluster(address: str | None) -> bool:
    """True when antray connects to a running Ray (``--address``, or ``RAY_ADDRESS`` as
    set for a job started with ``ray job submit``) instead of starting its own."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def ensure_ray(
    address: str | None,
    *,
    num_cpus: int | None = None,
    head_resource: str = DEFAULT_HEAD_RESOURCE,
    wait_state_api: bool = True,
) -> None:
    """Start a local Ray (the machine's CPUs) or join ``address`` (auto, ray://host:port).

    ``wait_state_api``: wait until the State API answers (``wait_for_state_api``), which
    Train needs to free a dead run's placement groups; work without a Train run (evaluation
    tasks) skips the wait.

    Token authentication: a cluster uses whatever it was started with, and Ray itself
    finds the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)
    when ``RAY_AUTH_MODE=token``; antray never touches either. Only the private local
    instance antray starts for itself runs without (unless RAY_AUTH_MODE says otherwise)."""
    import ray

    if address:
        probe_address(address)
    if ray.is_initialized():
        return
    # Train V2 re-routes worker print() through a logger and, because Ray wraps stdout,
    # also tees it: every progress line would reach the driver twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    joining = joins_cluster(address)
    try:
        if joining:
            target = _join_target(address)
            ray.init(
                address=target,
                namespace="antray",
                log_to_driver=True,
                runtime_env=None if target.startswith("ray://") else _pinned(target, {}),
            )
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # One machine: no node of it can be drained or preempted, so Train V2's
            # preemption watcher (an actor polling the drain state every 5 s, ~0.6 % of a
            # core) has nothing to watch. Set in this instance's job environment, not in
            # os.environ: Train copies the driver's os.environ to every later run, which
            # may be on a cluster. A value the user set is left to Train.
            watcher = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
            env_vars = {} if watcher in os.environ else {watcher: "0"}
            port = _free_port()
            with _environ({GCS_PORT_VARIABLE: str(port)}):
                ray.init(
                    # "local": always a new instance. Without it ray.init() joins whatever
                    # /tmp/ray/ray_current_cluster names (another antray run, a test
                    # cluster, or a stale address), sharing or failing on someone else's Ray.
                    address="local",
                    num_cpus=num_cpus,
                    namespace="antray",
                    log_to_driver=True,
                    # This one node is the head: the store, stop flag and trial drivers
                    # find the marker they ask for on a cluster.
                    resources={head_resource: HEAD_RESOURCE_AMOUNT},
                    runtime_env=_pinned(f"{_node_ip()}:{port}", env_vars),
                )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        raise UserError(f"cannot reach Ray at {where}: {str(exc).splitlines()[0]}") from None
    if wait_state_api and not (address or "").startswith("ray://"):  # a client has none
        wait_for_state_api()


# Ray reads the GCS port of a head it starts from here (ray._private.node).
GCS_PORT_VARIABLE = "RAY_GCS_SERVER_PORT"


def _pinned(gcs_address: str, env_vars: dict[str, str]) -> dict[str, Any]:
    """The job's runtime environment with ``RAY_ADDRESS`` naming this run's instance.

    Everything of this job that asks Ray's State API without an address (Train V2's
    placement-group cleaner, Tune's trial drivers) otherwise looks for "the" local
    instance, and with a second Ray on the machine (another antray run, a test cluster)
    finds "multiple active Ray instances" and fails; the cleaner then dies for good and a
    stopped trial's resources stay reserved. One run talks to one instance."""
    return {"env_vars": {**env_vars, "RAY_ADDRESS": gcs_address}}


def _join_target(address: str | None) -> str:
    """The address to join: ``--address`` (``auto`` resolved here, refusing to guess
    between several instances on this machine), else ``RAY_ADDRESS``."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    target = address if address and address != "auto" else os.environ.get("RAY_ADDRESS")
    target = target or "auto"
    if target.startswith("ray://"):
        return target
    return canonicalize_bootstrap_address_or_die(target)


def _node_ip() -> str:
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def connected_address() -> str | None:
    """The GCS address of the instance this process is connected to."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # a Ray client connection has none
        return None


def wait_for_state_api(timeout_s: float = STATE_API_TIMEOUT_S) -> bool:
    """Wait until Ray's State API answers (the dashboard has put its address in the GCS);
    False, with a warning, when it does not within ``timeout_s`` or Ray has no dashboard.

    Train V2's placement-group cleaner asks the State API whether a run's controller is
    alive, and frees the run's worker placement group once it is not (a Tune trial that
    ASHA stopped, a driver that died). In Ray 2.60 the cleaner's monitor thread dies on the
    first ``ConnectionError`` ("Could not read 'dashboard' from GCS", raised after 40 s
    without a dashboard), and from then on nothing frees those placement groups: the next
    trial waits for their GPUs for ever. A dashboard that is still starting is what makes
    the first query fail, so runs start only once it answers."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (what Ray needs to run a dashboard)
    except ImportError:
        _warn_once(
            "[antray] Ray runs without its dashboard (install ray[default]): Train cannot "
            "free the resources of a run whose controller dies, e.g. a trial Tune stopped"
        )
        return False
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            list_nodes(address=connected_address(), limit=1, timeout=5)
            return True
        except Exception as exc:  # ConnectionError while it starts, RayStateApiException
            if time.monotonic() >= deadline:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                _warn_once(
                    f"[antray] Ray's State API did not answer within {timeout_s:.0f} s "
                    f"({first}): resources of a stopped trial or a dead run may stay reserved"
                )
                return False
            time.sleep(0.5)


def head_options(head_resource: str) -> dict[str, Any]:
    """Actor options that keep an actor on the head node, so that a spot worker's loss
    never takes the replay store, the stop flag or a trial driver with it."""
    import ray

    if ray.cluster_resources().get(head_resource, 0) > 0:
        return {
            "resources": {head_resource: HEAD_SLIVER},
            "scheduling_strategy": OUTSIDE_ANY_PLACEMENT_GROUP,
        }
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    _warn_once(
        f"[antray] the cluster has no {head_resource!r} resource (see docs/cluster.md); "
        "the replay store and stop flag stay on the driver's node"
    )
    return {
        "scheduling_strategy": NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        )
    }


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr, flush=True)
