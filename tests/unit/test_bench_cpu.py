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
        [f"{site}/core/src/ray/gcs/gcs_server", "--log_dir=/tmp/ray"],
        ["/v/bin/python", "-u", f"{site}/dashboard/dashboard.py", "--host=127.0.0.1"],
        ["/v/bin/python", f"{site}/_private/log_monitor.py", "--session-dir=/tmp/ray/s"],
        ["ray-dashboard-JobHead-0 (/v/bin/python -B -c from multiprocessing import main)"],
        ["ray::TrainController.run"],
        ["ray::ReplayStoreActor"],
    ]
    kept = [
        [f"{site}/core/src/ray/raylet/raylet", "--raylet_socket_name=/tmp/s"],
        ["/v/bin/python", f"{site}/_private/workers/default_worker.py", "--node-ip-address=1"],
        ["ray::RayTrainWorker.__init__"],
        ["ray::RayTrainWorker.run_train_fn"],
        ["ray::IDLE"],
        ["/v/bin/antray", "train", "--config", "configs/mnist_ant1x1.yaml"],
        ["/v/bin/python", "benchmarks/bench_orchestrator.py", "--storage", "/tmp/ray/x"],
        # a DataLoader worker of the Train worker: Ray's paths only in its arguments
        ["/v/bin/python", "-c", "from multiprocessing.forkserver import main", f"{site}/x"],
        ["bash"],
        [],
    ]
    assert [renice.is_ray_daemon(a) for a in daemons] == [True] * len(daemons)
    assert [renice.is_ray_daemon(a) for a in kept] == [False] * len(kept)


def test_renice_changes_only_the_daemons_it_selects(monkeypatch):
    renice = load_benchmark("renice_ray_daemons")
    table = {
        11: ["/v/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server"],
        12: ["ray::RayTrainWorker.run_train_fn"],
        13: ["ray::ReplayStoreActor"],
    }
    niceness = {11: 0, 12: 0, 13: 15}
    monkeypatch.setattr(renice, "processes", lambda: table)
    monkeypatch.setattr(renice.os, "getpriority", lambda which, pid: niceness[pid])
    monkeypatch.setattr(renice.os, "setpriority", lambda which, pid, n: niceness.update({pid: n}))
    done: dict[int, str] = {}
    renice.renice_daemons(10, done)
    assert niceness == {11: 10, 12: 0, 13: 15}  # never lowered, never the Train worker
    assert sorted(done) == [11, 13]


def test_renice_runs_the_command_and_returns_its_status(monkeypatch):
    renice = load_benchmark("renice_ray_daemons")
    scans: list[int] = []
    monkeypatch.setattr(renice, "renice_daemons", lambda nice, done: scans.append(nice))
    code = "import sys, time; time.sleep(0.3); sys.exit(3)"
    assert renice.main(["--nice", "7", "--every", "0.05", "--", sys.executable, "-c", code]) == 3
    assert scans and set(scans) == {7}


def test_compile_ant_parts_runs_every_part(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # as when run by path
    script = load_benchmark("compile_ant_parts")
    args = ["--backend", "eager", "--threads", "1", "--batch", "4"]
    args += ["--steps", "1", "--repeats", "1"]
    times = script.main(args)
    assert len(times) == 3 and all(e > 0 and c > 0 for e, c in times.values())
    assert "backend eager" in capsys.readouterr().out
