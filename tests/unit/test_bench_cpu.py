"""The CPU benchmarks build configs the current config schema accepts, and bench_modes runs.

Both stopped running, unnoticed, once the MNIST configs gained `data.val_suite: mnist-c`,
which needs the validation split the benchmarks turn off: these tests keep them runnable."""

from pathlib import Path

import pytest

from benchmarks import bench_modes, bench_orchestrator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the scripts read configs/ by relative path, as run from the root


def test_bench_orchestrator_configs_validate(at_repo):
    for overrides in (
        bench_orchestrator.overrides_a(12800, 2),
        bench_orchestrator.overrides_b(12800, 3) + ["ant.restart_iterations=100"],
    ):
        # what each run loads; raises if the schema refuses it
        cfg = bench_orchestrator.config(overrides)
        assert cfg.data.limit_train == 12800 and cfg.noise.mode == "ant"


def test_bench_modes_times_each_mode(at_repo, mnist_root, one_torch_thread, capsys):
    rates = bench_modes.main(
        ["--modes", "gnt,ant1x1", "--repeats", "1", "--train-images", "256", "--threads", "1"]
    )
    assert set(rates) == {"gnt", "ant1x1"} and all(r[0] > 0 for r in rates.values())
    assert "| ant1x1 |" in capsys.readouterr().out  # its row of the printed table


def test_bench_modes_times_step_blocks_of_the_fused_step(
    at_repo, mnist_root, one_torch_thread, capsys
):
    rates = bench_modes.main(
        ["--modes", "gnt,ant1x1-fused", "--repeats", "2", "--block-steps", "2",
         "--train-images", "256", "--threads", "1"]
    )  # fmt: skip
    assert set(rates) == {"gnt", "ant1x1-fused"}
    assert all(len(r) == 2 and min(r) > 0 for r in rates.values())
    out = capsys.readouterr().out
    assert "| ant1x1-fused |" in out and "blocks of 2 steps" in out
