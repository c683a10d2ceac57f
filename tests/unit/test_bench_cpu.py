"""The CPU benchmarks build configs the current config schema accepts, and bench_modes runs.

Both stopped running, unnoticed, once the MNIST configs gained `data.val_suite: mnist-c`,
which needs the validation split the benchmarks turn off: these tests keep them runnable."""

import sys
from pathlib import Path

import pytest
from benchmark_script import load_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the scripts read configs/ by relative path, as run from the root


def test_bench_orchestrator_configs_validate(at_repo):
    bench = load_benchmark("bench_orchestrator")
    for overrides in (
        bench.overrides_a(12800, 2),
        bench.overrides_b(12800, 3) + ["ant.restart_iterations=100"],
    ):
        cfg = bench.config(overrides)  # what each run loads; raises if the schema refuses it
        assert cfg.data.limit_train == 12800 and cfg.noise.mode == "ant"


def test_bench_modes_times_each_mode(at_repo, mnist_root, one_torch_thread, capsys):
    rates = load_benchmark("bench_modes").main(
        ["--modes", "gnt,ant1x1", "--repeats", "1", "--train-images", "256", "--threads", "1"]
    )
    assert set(rates) == {"gnt", "ant1x1"} and all(r[0] > 0 for r in rates.values())
    assert "| ant1x1 |" in capsys.readouterr().out  # its row of the printed table


def test_renice_selects_ray_daemons_but_not_raylet_or_workers():
    renice = load_benchmark("renice_ray_daemons")
    site = "/v/lib/python3.11/site-packages/ray"
    daemons = [
        f"{site}/core/src/ray/gcs/gcs_server --log_dir=/tmp/ray",
        f"/v/bin/python -u {site}/dashboard/dashboard.py --host=127.0.0.1",
        "ray-dashboard-JobHead-0 (/v/bin/python -B -c from multiprocessing import main)",
        "ray::TrainController.run",
        "ray::ReplayStoreActor",
    ]
    kept = [
        f"{site}/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/s",
        f"/v/bin/python {site}/_private/workers/default_worker.py --node-ip-address=1",
        "ray::RayTrainWorker.__init__",
        "ray::RayTrainWorker.run_train_fn",
        "ray::IDLE",
        "/v/bin/antray train --config configs/mnist_ant1x1.yaml",
        "/v/bin/python benchmarks/bench_orchestrator.py --only-a",
        "bash",
    ]
    assert [renice.is_ray_daemon(c) for c in daemons] == [True] * len(daemons)
    assert [renice.is_ray_daemon(c) for c in kept] == [False] * len(kept)


def test_renice_runs_the_command_and_returns_its_status():
    renice = load_benchmark("renice_ray_daemons")
    code = "import sys, time; time.sleep(0.2); sys.exit(3)"
    assert renice.main(["--every", "0.05", "--", sys.executable, "-c", code]) == 3
