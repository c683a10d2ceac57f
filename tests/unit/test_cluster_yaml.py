"""cluster.yaml passes the checks `ray up` runs before any cloud call (offline)."""

import json
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_cluster_yaml_is_valid_for_ray_up():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER.read_text())
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(raw, json.loads(schema_path.read_text()))
    validate_config(prepare_config(raw))
    assert raw["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1
