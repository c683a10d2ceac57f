"""Bad input on the default (Ray) backend is refused on the driver before Ray starts:
exit 2, one line on stderr, and no run directory. Also: storage locations and Ray's
token authentication on the driver."""

import os
import time
from pathlib import Path

import pytest
import ray

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.errors import UserError
from orchestrator.storage import RunLocation, Storage, location_for

REPO = Path(__file__).resolve().parents[2]
ANT = str(REPO / "configs/mnist_ant1x1.yaml")


def run_cli(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def sets(*overrides):
    out = []
    for o in overrides:
        out += ["--set", o]
    return out


@pytest.fixture(autouse=True)
def no_ray_started():
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized(), "the check must happen before Ray starts"


def train_argv(tmp_path, *extra, backend=None):
    argv = ["train", "--config", ANT, "--run-dir", str(tmp_path / "run")]
    if backend:
        argv += ["--backend", backend]
    return [*argv, *extra]


@pytest.mark.parametrize("backend", [None, "local"])
def test_missing_dataset(tmp_path, capsys, backend):
    code, err = run_cli(
        capsys, train_argv(tmp_path, "--data-root", str(tmp_path / "nodata"), backend=backend)
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "MNIST files missing" in err
    assert not (tmp_path / "run").exists()


def test_unknown_model_name(tmp_path, capsys, mnist_root):
    code, err = run_cli(capsys, train_argv(tmp_path, *sets("model.name=resnet9000")))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "unknown model 'resnet9000'" in err and "madry_cnn" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["runtime.device=cuda"], "runtime.gpus_per_worker > 0"),
        (["runtime.device=cuda", "runtime.gpus_per_worker=1"], "no GPU"),
        (["runtime.gpus_per_worker=1"], "no GPU"),
    ],
)
def test_gpu_the_machine_does_not_have(
    tmp_path, capsys, monkeypatch, mnist_root, overrides, message
):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, err = run_cli(capsys, train_argv(tmp_path, *sets(*overrides)))
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_more_workers_than_the_machine_holds(tmp_path, capsys, mnist_root):
    cpus = os.cpu_count() or 1
    workers = cpus + 1  # the global batch must split evenly over them
    argv = train_argv(
        tmp_path, *sets(f"runtime.num_workers={workers}", f"data.batch_size={32 * workers}")
    )
    code, err = run_cli(capsys, argv)
    assert code == 2 and "can hold at most" in err and "CPU" in err, err
    assert not (tmp_path / "run").exists()


def test_unreachable_s3_endpoint_fails_fast(tmp_path, capsys, mnist_root):
    start = time.perf_counter()
    code, err = run_cli(
        capsys,
        train_argv(
            tmp_path,
            *sets(
                "runtime.storage=s3://bucket/prefix", "runtime.storage_endpoint=http://127.0.0.1:9"
            ),
        ),
    )
    assert code == 2 and "cannot reach the storage endpoint http://127.0.0.1:9" in err, err
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "run").exists()


def test_storage_that_cannot_be_written(tmp_path, capsys, mnist_root):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = run_cli(capsys, train_argv(tmp_path, *sets(f"runtime.storage={blocker}/ckpt")))
    assert code == 2 and "is not writable" in err, err
    assert not (tmp_path / "run").exists()


def test_tune_with_a_missing_dataset(tmp_path, capsys):
    code, err = run_cli(
        capsys,
        [
            "tune",
            "--config",
            ANT,
            "--space",
            "ant_epsilon",
            "--grid",
            "3,9",
            "--data-root",
            str(tmp_path / "nodata"),
            "--out",
            str(tmp_path / "tune"),
        ],
    )
    assert code == 2 and len(err.splitlines()) == 1 and "MNIST files missing" in err, err
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize(
    "value, root",
    [
        ("s3://bucket/some/prefix/", "s3://bucket/some/prefix"),
        ("gs://bucket", "gs://bucket"),
        ("/mnt/efs/antray", "/mnt/efs/antray"),
    ],
)
def test_storage_uris_stay_uris(value, root):
    storage = Storage.parse(value)
    assert storage.root == root
    assert storage.join("run-1").root == f"{root}/run-1"
    assert storage.run_config_args() == {"storage_path": root}


@pytest.mark.parametrize("value", ["ftp://host/x", "s3://", "http://host/x"])
def test_storage_uri_with_an_unknown_scheme_is_refused(value):
    with pytest.raises(UserError, match="runtime.storage"):
        Storage.parse(value)


def test_custom_endpoint_gives_train_a_pyarrow_filesystem():
    import pyarrow.fs

    args = Storage.parse("s3://bucket/prefix", "http://127.0.0.1:9000").run_config_args()
    assert args["storage_path"] == "bucket/prefix"  # prefix-stripped, as Train expects
    assert isinstance(args["storage_filesystem"], pyarrow.fs.S3FileSystem)


def test_resume_reads_where_the_run_recorded_its_checkpoints(tmp_path):

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(ANT, ["runtime.storage=s3://bucket/p"])
    first = location_for(cfg.runtime, run, resume=False)
    first.write(run)
    assert first.name.startswith("run-")
    plain = load_config(ANT)
    again = location_for(plain.runtime, run, resume=True)
    assert again == first, "resume without --set runtime.storage finds the same place"
    other = load_config(ANT, ["runtime.storage=s3://other/p"])
    with pytest.raises(UserError, match="keeps its checkpoints in s3://bucket/p"):
        location_for(other.runtime, run, resume=True)
    # A run directory from before storage.json: the default local storage.
    old = tmp_path / "old"
    old.mkdir()
    assert RunLocation.read(old) == RunLocation(Storage(str(old / "ray")), "train")


class FakeInit:
    def __init__(self):
        self.kwargs = None

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        self.gcs_port = os.environ.get("RAY_GCS_SERVER_PORT")  # what Ray would read


@pytest.mark.parametrize(
    "address, env, joins",
    [
        (None, {}, False),
        ("10.0.0.1:6379", {}, True),
        (None, {"RAY_ADDRESS": "10.0.0.1:6379"}, True),
    ],
)
def test_token_auth_is_left_to_the_cluster(monkeypatch, address, env, joins):
    from orchestrator import ray_instance

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # set, then removed: monkeypatch restores the original (absent) state afterwards
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "unset")
    monkeypatch.delenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fake = FakeInit()
    monkeypatch.setattr(ray, "init", fake)
    monkeypatch.setattr(ray_instance, "probe_address", lambda address: None)
    waited = []
    monkeypatch.setattr(ray_instance, "wait_for_state_api", lambda: waited.append(True))
    ray_instance.ensure_ray(address)
    assert waited == [True]  # nothing starts before Train's cleaner can reach the State API
    if joins:
        # Ray reads RAY_AUTH_MODE and the token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
        # ~/.ray/auth_token) itself; antray must not switch authentication off.
        assert "RAY_AUTH_MODE" not in os.environ
        assert "resources" not in fake.kwargs
        # A cluster's nodes can be drained (spot): Train keeps watching for it. Every
        # process of the job asks the State API of this cluster, never "the" local Ray.
        assert fake.kwargs["runtime_env"] == {"env_vars": {"RAY_ADDRESS": "10.0.0.1:6379"}}
    else:
        assert os.environ["RAY_AUTH_MODE"] == "disabled"  # antray's own private instance
        # One machine, nothing to drain: off in this instance's job environment only,
        # so a later run on a cluster from this process keeps Train's watcher.
        env_vars = fake.kwargs["runtime_env"]["env_vars"]
        assert env_vars["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
        # The job's processes find this instance, not another Ray on the machine: its
        # GCS port is chosen first, so RAY_ADDRESS can name it before it starts.
        assert env_vars["RAY_ADDRESS"].rsplit(":", 1)[1] == fake.gcs_port
        assert "RAY_GCS_SERVER_PORT" not in os.environ
        assert "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in os.environ
        assert fake.kwargs["resources"] == {"antray_head": 1.0}
        # A new instance, never the latest cluster Ray recorded in /tmp/ray.
        assert fake.kwargs["address"] == "local"


def test_explicit_auth_mode_is_respected_for_the_local_instance(monkeypatch):
    from orchestrator import ray_instance

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "init", FakeInit())
    monkeypatch.setattr(ray_instance, "wait_for_state_api", lambda: True)
    ray_instance.ensure_ray(None)
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_data_uri_on_the_local_backend_is_refused_before_any_network_call(tmp_path, capsys):
    code, err = run_cli(
        capsys, train_argv(tmp_path, "--data-root", "s3://bucket/data", backend="local")
    )
    assert code == 2 and "not a URI" in err, err
    assert not (tmp_path / "run").exists()


def test_config_paths_become_absolute_but_uris_stay_uris(tmp_path, monkeypatch):
    from orchestrator.train import absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = absolute_paths(
        load_config(ANT, ["data.root=s3://bucket/data/", "model.weights_path=w.pt"])
    )
    assert cfg.data.root == "s3://bucket/data/"
    assert cfg.model.weights_path == str(tmp_path / "w.pt")


def test_state_api_wait_warns_instead_of_hanging(monkeypatch, capsys):
    import sys

    import ray.util.state

    from orchestrator import ray_instance

    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs)
        raise ConnectionError("Could not read 'dashboard' from GCS. Did GCS start successfully?")

    monkeypatch.setattr(ray.util.state, "list_nodes", unreachable)
    monkeypatch.setattr(ray_instance, "_warned", set())
    assert ray_instance.wait_for_state_api(timeout_s=0) is False
    assert calls and "Could not read 'dashboard'" in capsys.readouterr().err
    monkeypatch.setattr(ray.util.state, "list_nodes", lambda **kwargs: [])
    assert ray_instance.wait_for_state_api(timeout_s=0) is True
    monkeypatch.setitem(sys.modules, "ray.dashboard.optional_deps", None)  # no ray[default]
    assert ray_instance.wait_for_state_api() is False
    assert "install ray[default]" in capsys.readouterr().err


def test_evaluation_starts_ray_without_waiting_for_the_state_api(monkeypatch):
    from orchestrator import eval_runner, ray_instance

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "init", FakeInit())
    waited = []
    monkeypatch.setattr(ray_instance, "wait_for_state_api", lambda: waited.append(True))
    eval_runner._init_ray(None)  # plain tasks: no Train run whose placement groups need it
    assert waited == []
    ray_instance.ensure_ray(None)  # what train, tune and preflight call
    assert waited == [True]
