"""cluster.yaml and cluster-1node.yaml pass the checks `ray up` runs before any cloud call
(offline), and every command in them and in docs/cluster.md uses files and flags that
exist: `antray` commands parse with antray's own parser and their `--set` keys validate,
`ray` commands only use options Ray's CLI has."""

import json
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator.cli import build_parser
from orchestrator.config import RuntimeSection, load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = [REPO / "cluster.yaml", REPO / "cluster-1node.yaml"]
DOCS = REPO / "docs" / "cluster.md"
PROJECT = "/home/ray/antray/"  # where file_mounts puts the checkout on every node
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def commands(raw: dict) -> list[str]:
    out = [c for key in COMMAND_KEYS for c in raw.get(key) or []]
    for node_type in raw["available_node_types"].values():
        out += [c for key in COMMAND_KEYS for c in node_type.get(key) or []]
    return out


def shell_parts(command: str) -> list[list[str]]:
    """The simple commands of a shell line (split on ;, &&, ||, &, parentheses)."""
    parts: list[list[str]] = [[]]
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    for token in lexer:
        if set(token) <= set(";&|()"):
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def ray_options(*names: str) -> set[str]:
    from ray.scripts.scripts import cli

    command = cli
    for name in names:
        command = command.commands[name]
    return {opt for param in command.params for opt in param.opts}


def check_ray_command(argv: list[str]) -> None:
    assert argv[0] == "ray"
    names = [argv[1], argv[2]] if argv[1] == "job" else [argv[1]]
    known = ray_options(*names)
    for token in argv[len(names) + 1 :]:
        if token == "--":
            break
        if token.startswith("-"):
            assert token.split("=", 1)[0] in known, f"`ray {' '.join(names)}` has no {token}"


def check_antray_command(argv: list[str]) -> None:
    assert argv[0] == "antray"
    args = build_parser().parse_args(argv[1:])  # SystemExit on an unknown flag
    config = getattr(args, "config", None)
    if config and config.startswith("/home/ray/runs/"):
        assert args.resume, "a run's own config.yaml exists once it has run"
        load_config(None, args.overrides)
    elif config:
        assert config.startswith(PROJECT), config
        local = REPO / config[len(PROJECT) :]
        assert local.is_file(), f"{config}: no {local.relative_to(REPO)} in the repository"
        load_config(local, args.overrides)  # every --set key exists and validates


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_cluster_yaml_is_valid_for_ray_up(path):
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load(path)
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(raw, json.loads(schema_path.read_text()))
    validate_config(prepare_config(raw))


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_image_is_pinned_to_the_installed_ray_and_python_311(path):
    image = load(path)["docker"]["image"]
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py311-cu\d{{3}}", image)
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert f"FROM {image}" in dockerfile, "the baked image starts from the same base"


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_head_carries_the_marker_the_actors_ask_for(path):
    raw = load(path)
    marker = RuntimeSection().head_resource
    head = raw["available_node_types"][raw["head_node_type"]]
    assert head["resources"][marker] > 0
    for name, node_type in raw["available_node_types"].items():
        if name != raw["head_node_type"]:
            assert marker not in node_type["resources"], "only the head is marked"
            assert node_type["resources"].get("GPU", 0) >= 1
    (start,) = [c for c in raw["head_start_ray_commands"] if "ray start" in c]
    flag = re.search(r"--resources='([^']+)'", start)
    assert flag and json.loads(flag.group(1))[marker] > 0


def test_gpu_workers_can_reach_s3_and_are_spot():
    worker = load(CLUSTERS[0])["available_node_types"]["gpu_worker"]["node_config"]
    assert worker["IamInstanceProfile"]
    assert worker["InstanceMarketOptions"]["MarketType"] == "spot"


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_commands_use_files_and_flags_that_exist(path):
    raw = load(path)
    seen_ray_start = False
    for command in commands(raw):
        for argv in shell_parts(command):
            for token in argv:
                if token.startswith(PROJECT):
                    rel = token[len(PROJECT) :]
                    assert (REPO / rel).exists(), f"{token}: no {rel} in the repository"
            if argv[0] == "ray":
                check_ray_command(argv)
                seen_ray_start |= argv[1] == "start"
            if argv[0] == "antray":
                check_antray_command(argv)
    assert seen_ray_start
    mounts = raw["file_mounts"]
    assert mounts[PROJECT.rstrip("/")] == ".", "the checkout is what the commands refer to"
    # The token travels from your machine, never from the repository.
    token_source = mounts["/home/ray/.ray/auth_token"]
    assert token_source.startswith("~/") and not (REPO / token_source[2:]).exists()
    assert "--env RAY_AUTH_MODE=token" in raw["docker"]["run_options"]


def documented_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_documented_commands_use_flags_and_files_that_exist():
    antray = ray_cmds = 0
    for line in documented_commands():
        for argv in shell_parts(line):
            if argv[0] == "ray":
                check_ray_command(argv)
                ray_cmds += 1
                if "--" in argv and argv[argv.index("--") + 1] == "antray":
                    check_antray_command(argv[argv.index("--") + 1 :])
                    antray += 1
                if argv[1] in ("up", "down", "dashboard", "exec", "attach", "rsync-down"):
                    assert (REPO / argv[2]).is_file(), argv
            elif argv[0] == "antray":
                check_antray_command(argv)
                antray += 1
            elif argv[0] == "docker" and "-f" in argv:
                assert (REPO / argv[argv.index("-f") + 1]).is_file()
    assert antray >= 4 and ray_cmds >= 10
