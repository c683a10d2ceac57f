"""What a Ray cluster can ever hold, from its node types, and whether a run fits in it.

On an autoscaling cluster (`ray up cluster.yaml`) the GPU nodes do not exist until
something asks for them, so the nodes alive now say nothing about what the cluster can
hold. The autoscaler's node types and their ``max_workers`` do. They are read from:

1. the cluster config that autoscaler v2 publishes in the GCS;
2. the bootstrap config of the autoscaler (v1, the default of ``ray up``) that runs on
   this machine for the connected instance: a driver submitted with ``ray job submit``
   runs on the head, where that autoscaler runs;
3. where an autoscaler runs but its config cannot be read from here (a driver on a
   laptop with ``--address``): unknown. The run is not refused; it starts and waits.

Without an autoscaler, the nodes alive now are all there is.

Fitting is bin packing, not summed resources: a run is a list of bundles (each Train
worker, the generator actor, a trial driver, the head's actors), each of which must land
on one node. Two half-empty GPU nodes do not hold a two-GPU worker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Resources = dict[str, float]
# The resources Ray reports that no antray bundle asks for.
_IGNORED = ("memory", "object_store_memory")


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: Resources
    max_count: int  # how many nodes of this type can exist at once


@dataclass(frozen=True)
class ClusterShape:
    """The node types a cluster can consist of, and (autoscaler) the cap on its worker
    nodes over all types."""

    node_types: tuple[NodeType, ...]
    source: str  # where the shape was read from, for messages
    max_worker_nodes: int | None = None
    head_type: str | None = None

    def describe(self) -> str:
        parts = [
            f"{t.max_count} x {t.name} ({_describe(t.resources)})"
            for t in self.node_types
            if t.max_count > 0
        ]
        return "; ".join(parts) or "no nodes"


def _describe(resources: Resources) -> str:
    shown = {k: v for k, v in resources.items() if v > 0 and k not in _IGNORED}
    return ", ".join(f"{k} {v:g}" for k, v in sorted(shown.items())) or "nothing"


def describe_bundles(bundles: list[Resources]) -> str:
    total: Resources = {}
    for bundle in bundles:
        for k, v in bundle.items():
            total[k] = total.get(k, 0.0) + v
    return _describe(total)


# --- shapes ------------------------------------------------------------------------


def shape_from_autoscaling_config(raw: dict[str, Any], source: str) -> ClusterShape:
    """A cluster config as ``ray up`` and ``ray start --autoscaling-config`` read it."""
    head = raw.get("head_node_type")
    types = []
    for name, spec in (raw.get("available_node_types") or {}).items():
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        count = 1 if name == head else int(spec.get("max_workers", raw.get("max_workers", 0)))
        types.append(NodeType(name, resources, count))
    cap = raw.get("max_workers")
    return ClusterShape(tuple(types), source, None if cap is None else int(cap), head)


def local_shape(num_cpus: int | None, gpus: int, head_resource: str) -> ClusterShape:
    """The one-node instance antray starts for itself."""
    resources = {"CPU": float(num_cpus or os.cpu_count() or 1), "GPU": float(gpus)}
    resources[head_resource] = 1.0
    return ClusterShape((NodeType("this machine", resources, 1),), "this machine")


def alive_shape() -> ClusterShape:
    """The nodes of the connected cluster that are up now, each its own type."""
    import ray

    types = []
    for node in ray.nodes():
        if node.get("Alive"):
            resources = {
                k: float(v)
                for k, v in node.get("Resources", {}).items()
                if not k.startswith("node:") and k not in _IGNORED
            }
            # One type per node, named so that two nodes on one address stay apart.
            name = f"{node.get('NodeManagerAddress', 'node')} ({node.get('NodeID', '')[:8]})"
            types.append(NodeType(name, resources, 1))
    return ClusterShape(tuple(types), "the nodes that are up now")


def connected_shape() -> ClusterShape | None:
    """The most the connected cluster can become; None when an autoscaler runs whose
    node types cannot be read from here."""
    shape = _autoscaler_v2_shape() or _monitor_config_shape()
    if shape is not None:
        return shape
    if autoscaler_launches():
        return None
    return alive_shape()


def _autoscaler_v2_shape() -> ClusterShape | None:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # private API; absent under autoscaler v1
        return None
    if config is None or not config.node_group_configs:
        return None
    types = tuple(
        NodeType(g.name, {k: float(v) for k, v in g.resources.items()}, int(g.max_count))
        for g in config.node_group_configs
    )
    return ClusterShape(types, "the autoscaler's cluster config")


def _monitor_config_shape() -> ClusterShape | None:
    path = autoscaling_config_path()
    if path is None:
        return None
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict) or not raw.get("available_node_types"):
        return None
    return shape_from_autoscaling_config(raw, f"the autoscaler's config {path}")


def autoscaling_config_path() -> str | None:
    """The ``--autoscaling-config`` of the autoscaler monitor that serves the connected
    instance, when it runs on this machine (on a `ray up` cluster: the head)."""
    import psutil
    import ray

    gcs = ray.get_runtime_context().gcs_address
    for process in psutil.process_iter(["cmdline"]):
        args = process.info.get("cmdline") or []
        if not any(a.endswith("monitor.py") for a in args[:3]):
            continue
        flags = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if flags.get("--gcs-address") == gcs and flags.get("--autoscaling-config"):
            return os.path.expanduser(flags["--autoscaling-config"])
    return None


def autoscaler_status() -> dict[str, Any] | None:
    """The autoscaler's last report (None: no autoscaler serves this cluster)."""
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception:  # not connected, or a client without the internal KV
        return None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def autoscaler_launches() -> bool:
    """Whether an autoscaler that can launch nodes serves this cluster.

    Every Ray head runs the autoscaler's monitor; without ``--autoscaling-config`` it only
    mirrors the nodes that exist (a "readonly" provider that names each node's type
    ``node_<id>``) and never launches one: the nodes alive now are then all there is."""
    status = autoscaler_status()
    if status is None:
        return False
    mapping = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
    mirrored = bool(mapping) and all(kind == f"node_{node}" for node, kind in mapping.items())
    return not mirrored


def autoscaler_activity() -> str:
    """One line on what the autoscaler is launching, for the wait messages."""
    status = autoscaler_status()
    if status is None:
        return ""
    report = status.get("autoscaler_report") or {}
    launching = dict(report.get("pending_launches") or {})
    for pending in report.get("pending_nodes") or []:
        if len(pending) >= 2:
            launching[pending[1]] = launching.get(pending[1], 0) + 1
    if launching:
        shown = ", ".join(f"{n} x {t}" for t, n in sorted(launching.items()))
        return f"; the autoscaler is launching {shown}"
    demand = report.get("pending_resources") or {}
    if demand:
        return f"; the autoscaler sees pending demand {_describe(demand)}"
    return ""


# --- packing -----------------------------------------------------------------------


def fits(bundles: list[Resources], shape: ClusterShape) -> bool:
    """Whether ``bundles`` can all be placed at once on nodes ``shape`` can have.

    First-fit decreasing over node instances: the head and nodes already opened first,
    a new node of the smallest type that takes the bundle when none does, within each
    type's ``max_count`` and the cluster's cap on worker nodes. A heuristic (packing is
    NP-hard), exact for the uniform bundles a run is made of."""
    open_nodes: list[tuple[NodeType, Resources]] = []
    opened: dict[str, int] = {}
    workers = 0
    for node_type in shape.node_types:
        if node_type.name == shape.head_type:
            open_nodes.append((node_type, dict(node_type.resources)))
            opened[node_type.name] = 1
    for bundle in sorted(bundles, key=_size, reverse=True):
        if _place(bundle, open_nodes):
            continue
        candidates = [
            t
            for t in shape.node_types
            if opened.get(t.name, 0) < t.max_count
            and t.name != shape.head_type
            and _holds(t.resources, bundle)
        ]
        if not candidates or (
            shape.max_worker_nodes is not None and workers >= shape.max_worker_nodes
        ):
            return False
        smallest = min(candidates, key=lambda t: _size(t.resources))
        opened[smallest.name] = opened.get(smallest.name, 0) + 1
        workers += 1
        free = dict(smallest.resources)
        _take(free, bundle)
        open_nodes.append((smallest, free))
    return True


def copies_that_fit(bundles: list[Resources], shape: ClusterShape, limit: int) -> int:
    """How many copies of ``bundles`` (one trial) the cluster holds at once, up to ``limit``."""
    count = 0
    while count < limit and fits(bundles * (count + 1), shape):
        count += 1
    return count


def _size(resources: Resources) -> tuple[float, float]:
    return resources.get("GPU", 0.0), resources.get("CPU", 0.0)


def _holds(free: Resources, bundle: Resources) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items() if v > 0)


def _take(free: Resources, bundle: Resources) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def _place(bundle: Resources, open_nodes: list[tuple[NodeType, Resources]]) -> bool:
    for _, free in open_nodes:
        if _holds(free, bundle):
            _take(free, bundle)
            return True
    return False
