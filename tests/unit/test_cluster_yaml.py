"""cluster.yaml and cluster-1node.yaml pass the checks `ray up` runs before any cloud call
(offline), and every command in them and in docs/cluster.md uses files and flags that
exist: `antray` commands parse with antray's own parser and their `--set` keys validate,
`ray` commands only use options Ray's CLI has. What Ray's checks do not see is checked
here too: the IAM profiles and the policies docs/cluster.md creates them with, the host
folders mounted into the containers, GPUs in the containers, the GPU worker's size, and
where MLflow keeps what must outlive `ray down`."""

import json
import os
import re
import shlex
import subprocess
from fnmatch import fnmatch
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
CONTAINER_UID = 1000  # the `ray` user of rayproject/ray (docker/Dockerfile: ray:users)
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


# --- IAM, containers, sizes and persistence (what `ray up`'s own checks do not look at) ---


def ray_default_profile() -> str:
    """The instance profile `ray up` gives a head whose node_config names none."""
    try:
        from ray.autoscaler._private.aws.config import DEFAULT_RAY_INSTANCE_PROFILE
    except ImportError:  # boto3 missing: Ray 2.60's value
        return "ray-autoscaler-v1"
    return DEFAULT_RAY_INSTANCE_PROFILE


def documented_json() -> dict[str, dict]:
    """The JSON files docs/cluster.md shows, by the `name.json` its paragraph starts with;
    json.loads raises on a block that does not parse."""
    text = DOCS.read_text()
    files = {}
    for match in re.finditer(r"```json\n(.*?)```", text, flags=re.S):
        intro = text[: match.start()].rstrip().rsplit("\n\n", 1)[-1]
        name = re.match(r"`([\w.-]+\.json)`", intro)
        assert name, f"a JSON block in docs/cluster.md without its file name: {intro!r}"
        files[name.group(1)] = json.loads(match.group(1))
    return files


def documented_iam() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """From the docs' `aws iam` commands: profile -> role, role -> policy file and
    role -> trust policy file."""
    profiles, policies, trusts = {}, {}, {}
    for line in documented_commands():
        for argv in shell_parts(line):
            if argv[:2] != ["aws", "iam"]:
                continue
            opts = dict(zip(argv[3::2], argv[4::2], strict=False))
            if argv[2] == "add-role-to-instance-profile":
                profiles[opts["--instance-profile-name"]] = opts["--role-name"]
            elif argv[2] == "put-role-policy":
                policies[opts["--role-name"]] = opts["--policy-document"].removeprefix("file://")
            elif argv[2] == "create-role":
                trusts[opts["--role-name"]] = opts["--assume-role-policy-document"].removeprefix(
                    "file://"
                )
    return profiles, policies, trusts


def role_policy(profile: str) -> dict:
    """The policy the docs attach to the role of an instance profile."""
    profiles, policies, _ = documented_iam()
    assert profile in profiles, f"docs/cluster.md creates no instance profile {profile}"
    role = profiles[profile]
    assert role in policies, f"docs/cluster.md puts no policy on role {role}"
    files = documented_json()
    assert policies[role] in files, f"docs/cluster.md shows no {policies[role]}"
    return files[policies[role]]


def allowed(policy: dict, action: str) -> list[str]:
    """The resources `policy` allows `action` on (its wildcards matched as IAM does)."""
    resources = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        if statement["Effect"] == "Allow" and any(fnmatch(action, a) for a in actions):
            res = statement["Resource"]
            resources += [res] if isinstance(res, str) else res
    return resources


def node_types_except_head(raw: dict) -> dict[str, dict]:
    return {k: v for k, v in raw["available_node_types"].items() if k != raw["head_node_type"]}


def test_head_has_its_own_instance_profile():
    """The head names a profile the docs create, not Ray's default `ray-autoscaler-v1`,
    whose role (EC2 and S3 full access) may neither pass a role to the workers it
    launches nor resolve a `resolve:ssm:` ImageId."""
    raw = load(CLUSTERS[0])
    head = raw["available_node_types"][raw["head_node_type"]]["node_config"]
    assert "IamInstanceProfile" in head, "without one, `ray up` gives the head Ray's default"
    name = head["IamInstanceProfile"]["Name"]
    assert name != ray_default_profile()
    role_policy(name)  # created, with a policy, in docs/cluster.md


def test_the_head_may_pass_the_workers_role_and_no_other():
    """Launching a worker with an instance profile is an iam:PassRole on its role: the
    head's documented policy grants it for exactly the workers' role, which is not Ray's
    default, and lets the head launch, tag, describe and terminate instances."""
    raw = load(CLUSTERS[0])
    head_profile = raw["available_node_types"][raw["head_node_type"]]["node_config"][
        "IamInstanceProfile"
    ]["Name"]
    head_policy = role_policy(head_profile)
    profiles, _, _ = documented_iam()
    for name, node_type in node_types_except_head(raw).items():
        profile = node_type["node_config"]["IamInstanceProfile"]["Name"]
        assert profile != ray_default_profile(), f"{name}: Ray's default head profile"
        role_policy(profile)
        worker_role = f"arn:aws:iam::YOUR-ACCOUNT:role/{profiles[profile]}"
        assert allowed(head_policy, "iam:PassRole") == [worker_role]
    for action in ("RunInstances", "CreateTags", "DescribeInstances", "TerminateInstances"):
        assert allowed(head_policy, f"ec2:{action}"), f"the head cannot ec2:{action}"


def test_documented_policies_parse_and_let_the_head_resolve_the_ami():
    """Every ```json block in docs/cluster.md parses; the roles trust EC2; and where an
    ImageId is `resolve:ssm:<parameter>`, the head's policy allows ssm:GetParameters on
    that parameter (EC2 reads it with the launching role's rights)."""
    files = documented_json()
    assert len(files) >= 3, "the trust policy and the two roles' policies"
    _, _, trusts = documented_iam()
    for role, trust in trusts.items():
        (statement,) = files[trust]["Statement"]
        assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}, role
        assert statement["Action"] == "sts:AssumeRole", role
    raw = load(CLUSTERS[0])
    head_profile = raw["available_node_types"][raw["head_node_type"]]["node_config"][
        "IamInstanceProfile"
    ]["Name"]
    ssm = allowed(role_policy(head_profile), "ssm:GetParameters")
    region = raw["provider"]["region"]
    for name, node_type in raw["available_node_types"].items():
        image = node_type["node_config"]["ImageId"]
        if image.startswith("resolve:ssm:"):
            arn = f"arn:aws:ssm:{region}::parameter{image.removeprefix('resolve:ssm:')}"
            assert any(fnmatch(arn, r) for r in ssm), f"{name}: the head cannot read {arn}"


def test_the_workers_policy_grants_s3_only():
    """The GPU workers read data and write checkpoints on S3 and need nothing else."""
    raw = load(CLUSTERS[0])
    for name, node_type in node_types_except_head(raw).items():
        policy = role_policy(node_type["node_config"]["IamInstanceProfile"]["Name"])
        for statement in policy["Statement"]:
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                assert action.startswith("s3:"), f"{name}: {action}"
        for action in ("s3:GetObject", "s3:PutObject", "s3:ListBucket"):
            assert allowed(policy, action), f"{name}: no {action}"


def container_options(raw: dict, node_type: str) -> list[str]:
    """The `docker run` options of a node type's container, merged as Ray 2.60 merges them:
    run_options + head_run_options on the head (`ray up` uses the global docker section),
    run_options + worker_run_options on workers, a worker type's own `docker` section
    replacing the global keys it names."""
    docker = dict(raw["docker"])
    if node_type == raw["head_node_type"]:
        return docker.get("run_options", []) + docker.get("head_run_options", [])
    docker.update(raw["available_node_types"][node_type].get("docker", {}))
    return docker.get("run_options", []) + docker.get("worker_run_options", [])


def volume_host_paths(options: list[str]) -> list[str]:
    argv = [token for option in options for token in shlex.split(option)]
    specs = [b for a, b in zip(argv, argv[1:], strict=False) if a in ("-v", "--volume")]
    specs += [a.split("=", 1)[1] for a in argv if a.startswith("--volume=")]
    return [spec.split(":", 1)[0] for spec in specs]


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_mounted_host_folders_are_made_for_the_container_user_before_docker_starts(path):
    """Docker creates a missing bind-mount source as root, and the image runs as uid 1000:
    every host folder mounted into a node's container is created and chowned to that uid by
    the node's initialization_commands, which run on the host before `docker run`."""
    raw = load(path)
    for name, node_type in raw["available_node_types"].items():
        init = node_type.get("initialization_commands", raw.get("initialization_commands"))
        argvs = [argv for command in init or [] for argv in shell_parts(command)]
        for host in volume_host_paths(container_options(raw, name)):
            made = [a for a in argvs if "mkdir" in a and "-p" in a and host in a]
            owned = [
                a
                for a in argvs
                if "chown" in a
                and host in a
                and a[a.index("chown") + 1].split(":")[0] == str(CONTAINER_UID)
            ]
            assert made and owned, f"{name}: {host} is not made and chowned before docker"


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_gpu_containers_get_all_gpus_and_gpu_less_ones_none(path):
    """A node type with GPUs runs its container with `--gpus all`; one without (the head
    of cluster.yaml) gets no such flag."""
    raw = load(path)
    for name, node_type in raw["available_node_types"].items():
        options = container_options(raw, name)
        gpus = [o for o in options if o.split()[:1] == ["--gpus"] or o.startswith("--gpus=")]
        if node_type["resources"].get("GPU", 0) > 0:
            assert gpus in (["--gpus all"], ["--gpus=all"]), f"{name}: {gpus}"
        else:
            assert not gpus, f"{name} has no GPU but its container asks for {gpus}"


@pytest.mark.parametrize(
    "config", sorted((REPO / "configs").glob("imagenet_*.yaml")), ids=lambda p: p.name
)
def test_a_gpu_worker_holds_one_trainings_share(config):
    """One GPU node runs a DDP worker, its data.loader_workers loader processes and the
    generator actor: the node type has a vCPU for each (1 + 1 + loader_workers, 8 for the
    ImageNet configs), and the Ray reservations of a worker and the actor fit on it."""
    node = load(CLUSTERS[0])["available_node_types"]["gpu_worker"]["resources"]
    cfg = load_config(config)
    assert node["CPU"] >= 1 + 1 + cfg.data.loader_workers
    ant = cfg.noise.mode == "ant"  # only ANT runs the generator actor
    cpus = cfg.runtime.cpus_per_worker + (cfg.runtime.generator_actor_cpus if ant else 0)
    gpus = cfg.runtime.gpus_per_worker + (cfg.runtime.generator_actor_gpus if ant else 0)
    assert cpus <= node["CPU"] and gpus <= node["GPU"]


def test_documented_rsync_down_copies_folder_contents():
    """`ray rsync-down` applies cluster.yaml's rsync_exclude (`**/runs`, ...) to what it
    copies, so `/home/ray/runs` without a trailing slash copies nothing: every documented
    rsync-down names its source folder with the slash."""
    sources = [
        argv[3]
        for line in documented_commands()
        for argv in shell_parts(line)
        if argv[:2] == ["ray", "rsync-down"]
    ]
    assert "/home/ray/mlflow/" in sources, "the MLflow metrics DB is copied before `ray down`"
    for source in sources:
        assert source.endswith("/"), source


def test_mlflow_artifacts_outlive_the_cluster():
    """The head's MLflow server writes artifacts to the S3 URI in ANTRAY_MLFLOW_ARTIFACTS
    (set for the head's container), and a head setup command stops `ray up` while that is
    still the YOUR-BUCKET placeholder."""
    raw = load(CLUSTERS[0])
    (server,) = [
        argv
        for command in raw["head_start_ray_commands"]
        for argv in shell_parts(command)
        if "mlflow" in argv and "server" in argv
    ]
    destination = server[server.index("--artifacts-destination") + 1]
    assert destination == "$ANTRAY_MLFLOW_ARTIFACTS"
    env = dict(
        option.removeprefix("--env ").split("=", 1)
        for option in container_options(raw, raw["head_node_type"])
        if option.startswith("--env ")
    )
    assert env["ANTRAY_MLFLOW_ARTIFACTS"].startswith("s3://")
    guards = [c for c in raw["head_setup_commands"] if "ANTRAY_MLFLOW_ARTIFACTS" in c]
    assert guards
    for value, code in ((env["ANTRAY_MLFLOW_ARTIFACTS"], 1), ("s3://a-bucket/antray/x", 0)):
        runs = [
            subprocess.run(
                ["bash", "-c", guard],
                env={"PATH": os.environ["PATH"], "ANTRAY_MLFLOW_ARTIFACTS": value},
                capture_output=True,
            ).returncode
            for guard in guards
        ]
        assert max(runs) == code, (value, runs)
