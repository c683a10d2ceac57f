"""``antray eval`` end to end on a tiny MNIST classifier (evaluation/runner.py, cli.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from evaluation.model_loading import load_checkpoint_model, load_torchvision_model
from evaluation.request import EvalInputError, EvalRequest
from evaluation.runner import evaluate
from orchestrator.cli import main
from trainers.checkpoint_format import save_state
from trainers.data import load_dataset, resolve_data_root
from trainers.models import create_model

CONFIG = {
    "model": {"name": "madry_cnn", "num_classes": 10},
    "data": {"dataset": "mnist", "val_size": 1000, "split_seed": 3},
    "ant": {"epsilon": 8.0, "generator": "1x1"},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/unit/conftest.py


@pytest.fixture(scope="module")
def trained_state(mnist_root: Path) -> dict:
    """A madry_cnn after 50 SGD steps on real MNIST (~90 % test accuracy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = load_dataset("mnist", resolve_data_root(mnist_root), train=True, limit=6400)
    x, y = train.dataset.tensors[0][:6400], train.dataset.tensors[1][:6400]
    model = create_model("madry_cnn", num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(50):
        idx = torch.randint(0, 6400, (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return {"config": CONFIG, "model": model.state_dict(), "epoch": 0}


@pytest.fixture
def run_dir(tmp_path: Path, trained_state: dict) -> Path:
    run = tmp_path / "run"
    save_state(trained_state, run / "checkpoint")
    return run


def _eval(argv: list[str], data_root: Path) -> int:
    return main(["eval", *argv, "--data-root", str(data_root), "--no-progress"])


def _user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line message of a user error (EvalInputError may not be mapped to exit 2 yet)."""
    try:
        rc = main(argv)
    except EvalInputError as exc:
        return str(exc)
    assert rc == 2
    return capsys.readouterr().err


def test_generated_suite_report_and_mlflow(
    run_dir: Path,
    mnist_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"
    mlruns = tmp_path / "mlruns"
    rc = _eval(
        [
            "--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--generated",
            "--limit", "64", "--corruptions", "shot_noise,stripe",
            "--eps-star", "gaussian", "--eps-star-limit", "32", "--out", str(out),
            "--mlflow-uri", f"file:{mlruns}",
        ],
        mnist_root,
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert 0.6 <= results["clean_accuracy"] <= 1.0  # trained: far above chance
    assert 0.0 <= results["mean_accuracy"] <= 1.0
    rows = results["rows"]
    # MNIST-C's generated suite: its own corruptions, one severity each
    assert sorted((r["corruption"], r["severity"]) for r in rows) == [
        ("shot_noise", 1),
        ("stripe", 1),
    ]
    assert {r["source"] for r in rows} == {"generated"} and {r["n"] for r in rows} == {64}
    assert {r["category"] for r in rows} == {"noise", "digital"}
    top1 = {r["corruption"]: r["top1"] for r in rows}
    assert top1["stripe"] < top1["shot_noise"]  # inverted side bands ruin a barely trained CNN
    assert results["mean_accuracy"] == pytest.approx(np.mean([r["top1"] for r in rows]))
    meta = results["metadata"]
    assert meta["data_source"] == "generated" and meta["benchmark"] == "mnist-c"
    assert meta["seed"] == 0 and meta["model"] == "run"
    assert meta["command"].startswith("antray eval --checkpoint")
    eps = results["eps_star"]["gaussian"]
    assert len(eps["values"]) == 32 and 0 < eps["median"] and eps["max_forwards_per_image"] <= 20
    never = sum(1 for v in eps["values"] if v == float("inf"))
    assert eps["never_flipped"] == never and 0 < eps["rel_precision"] <= 5e-3
    assert f"({never} of 32 never flipped)" in capsys.readouterr().out
    assert pq.read_table(out / "results.parquet").num_rows == 2
    assert (out / "report.md").is_file() and "generated" in (out / "report.md").read_text()

    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=f"file:{mlruns}").get_run(meta["run_id"])
    assert run.data.metrics["clean_accuracy"] == pytest.approx(results["clean_accuracy"])
    assert run.data.params["data_source"] == "generated"


def _mnist_c_tree(root: Path, mnist_root: Path, n: int) -> None:
    """shot_noise: the first n clean test images unchanged; zigzag: all black."""
    test = load_dataset("mnist", resolve_data_root(mnist_root), train=False, limit=n)
    x, y = test.dataset.tensors[0][:n], test.dataset.tensors[1][:n]
    images = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for name, data in (("shot_noise", images), ("zigzag", np.zeros_like(images))):
        folder = root / "mnist_c" / name
        folder.mkdir(parents=True)
        np.save(folder / "test_images.npy", data)
        np.save(folder / "test_labels.npy", y.numpy().astype(np.uint8))


def test_files_mnist_c_tree(run_dir: Path, mnist_root: Path, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    _mnist_c_tree(bench, mnist_root, 48)
    out = tmp_path / "files"
    rc = _eval(
        [
            "--checkpoint", str(run_dir / "checkpoint" / "state.pt"), "--benchmark", "mnist-c",
            "--benchmark-root", str(bench), "--corruptions", "shot_noise,zigzag",
            "--limit", "40", "--batch-size", "16", "--out", str(out),
        ],
        mnist_root,
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["corruption"]: r for r in results["rows"]}
    assert set(rows) == {"shot_noise", "zigzag"}
    assert all(
        r["source"] == "files" and r["severity"] == 1 and r["n"] == 40 for r in rows.values()
    )
    assert all(r["category"] is None for r in rows.values())
    # The "corrupted" split is the clean test prefix: same images, same accuracy.
    assert rows["shot_noise"]["top1"] == pytest.approx(results["clean_accuracy"])
    assert results["metadata"]["data_source"] == "files"
    assert results["mean_accuracy_without_noise"] is None  # MNIST-C has no categories
    assert pq.read_table(out / "results.parquet").num_rows == 2


def test_missing_benchmark_dir_exits_2(
    run_dir: Path, mnist_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing"
    argv = ["--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--benchmark-root"]
    rc = _eval([*argv, str(missing), "--out", str(tmp_path / "o")], mnist_root)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and str(missing / "mnist_c") in err and "--generated" in err
    assert not (tmp_path / "o").exists()


def test_foreign_checkpoint_exits_2(
    tmp_path: Path, mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    rc = _eval(["--checkpoint", str(foreign), "--benchmark", "mnist-c", "--generated"], mnist_root)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not an antray checkpoint" in err
    rc = _eval(["--checkpoint", str(tmp_path / "empty"), "--benchmark", "mnist-c"], mnist_root)
    assert rc == 2 and "no checkpoint" in capsys.readouterr().err


def test_bad_inputs_are_user_errors(
    run_dir: Path, mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["eval", "--checkpoint", str(run_dir), "--data-root", str(mnist_root), "--no-progress"]
    msg = _user_error([*base, "--benchmark", "cifar10-c", "--generated"], capsys)
    assert "trained on mnist" in msg
    msg = _user_error(
        [*base, "--benchmark", "mnist-c", "--generated", "--corruptions", "x"], capsys
    )
    assert "unknown corruption(s) x" in msg
    msg = _user_error([*base, "--benchmark", "mnist-c", "--severities", "2"], capsys)
    assert "severities" in msg  # MNIST-C files have one severity
    msg = _user_error([*base, "--benchmark", "mnist-c", "--generated", "--limit", "0"], capsys)
    assert "--limit must be > 0, got 0" in msg


def test_sharded_rows_equal_in_process(run_dir: Path, mnist_root: Path) -> None:
    """The per-shard function gives the same rows however the splits are sharded."""
    from orchestrator.eval_runner import run_shard

    model, _ = load_checkpoint_model(run_dir)
    calls = []

    def sequential(model, settings, shards, *, num_workers, progress):
        calls.append((len(shards), num_workers))
        return [run_shard(model, settings, shard) for shard in shards]

    kwargs = dict(
        benchmark="mnist-c", data_root=str(mnist_root), generated=True, limit=48, device="cpu",
        corruptions=["impulse_noise", "fog", "shear", "zigzag"], severities=[1], progress=False,
        batch_size=32,
    )  # fmt: skip
    local = evaluate(model, EvalRequest.build(**kwargs))
    sharded = evaluate(model, EvalRequest.build(num_workers=3, **kwargs), distribute=sequential)
    assert calls == [(4, 3)]
    assert sharded["rows"] == local["rows"]
    assert sharded["clean_accuracy"] == local["clean_accuracy"]


def test_checkpoint_discovery(tmp_path: Path, trained_state: dict) -> None:
    run = tmp_path / "raydir"
    old = save_state(trained_state, run / "ray" / "exp" / "checkpoint_000000")
    new = save_state(trained_state, run / "ray" / "exp" / "checkpoint_000001")
    now = time.time()
    os.utime(old, (now, now))
    os.utime(new, (now - 100, now - 100))  # mtime, not the name, picks the newest
    model, info = load_checkpoint_model(run)
    assert not model.training
    assert info["checkpoint"] == str(old.resolve()) and info["run_dir"] == str(run.resolve())
    assert (info["dataset"], info["epsilon"], info["generator"]) == ("mnist", 8.0, "1x1")
    _, info = load_checkpoint_model(new)
    assert info["run_dir"] == str(run.resolve())


def test_torchvision_needs_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(EvalInputError, match="--weights"):
        load_torchvision_model("resnet18")
    with pytest.raises(EvalInputError, match="unknown torchvision model"):
        load_torchvision_model("resnet_nope")
    weights = tmp_path / "r18.pth"
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), weights)
    model, info = load_torchvision_model("resnet18", weights)
    assert info["dataset"] == "imagenet" and not model.training
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_adversarial_eps_star_and_attacks(run_dir: Path, mnist_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "adv"
    rc = _eval(
        [
            "--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--generated",
            "--limit", "16", "--corruptions", "brightness", "--severities", "1",
            "--eps-star", "uniform,adversarial", "--eps-star-limit", "16", "--adv-seeds", "2",
            "--adv-iterations", "3", "--attacks", "pgd,ddn", "--attack-limit", "8",
            "--pgd-l2", "1.0", "--pgd-linf", "0,0.3", "--pgd-steps", "5", "--ddn-steps", "5",
            "--out", str(out),
        ],
        mnist_root,
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    adv = results["eps_star"]["adversarial"]
    assert len(adv["per_seed"]) == 2 and adv["seeds"] == [0, 1]
    # The paper's size carried to 28x28 (not the checkpoint's ant.epsilon), trained on
    # the train split: the 60000 training images less the 1000 validation ones.
    assert adv["epsilon"] == pytest.approx(135 * (784 / 150528) ** 0.5)
    assert (adv["generator"], adv["generator_data"]) == ("1x1", "train split (59000 images)")
    assert adv["unreachable_share"] == 0.0 and len(adv["never_flipped"]) == 2
    attacks = results["attacks"]
    assert set(attacks) == {"pgd_l2_1", "pgd_linf_0", "pgd_linf_0.3", "ddn"}
    assert attacks["pgd_linf_0.3"]["accuracy"] <= attacks["pgd_linf_0"]["accuracy"]
    assert len(attacks["ddn"]["values"]) == 8 and attacks["ddn"]["median_l2"] >= 0


def test_val_split_reads_the_checkpoints_validation_images(run_dir: Path, mnist_root: Path) -> None:
    """--split val: generated corruptions of the validation images the run carved from its
    training set (the checkpoint's data.val_size 1000 / split_seed 3), never the test set."""
    from trainers.data import load_split

    rc = _eval(
        [
            "--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--generated",
            "--split", "val", "--limit", "64", "--corruptions", "brightness", "--severities", "1",
            "--eps-star", "gaussian,adversarial", "--eps-star-limit", "16",
            "--adv-seeds", "1", "--adv-iterations", "2",
        ],
        mnist_root,
    )  # fmt: skip
    assert rc == 0
    out = run_dir / "eval-mnist-c-generated-val"  # the default directory names the split
    results = json.loads((out / "results.json").read_text())
    meta = results["metadata"]
    assert meta["split"] == "val"
    assert (meta["request"]["val_size"], meta["request"]["split_seed"]) == (1000, 3)
    val = load_split("mnist", resolve_data_root(mnist_root), "val", val_size=1000, split_seed=3)
    x = torch.stack([val[i][0] for i in range(64)])
    y = torch.tensor([int(val[i][1]) for i in range(64)])
    model, _ = load_checkpoint_model(run_dir)
    with torch.no_grad():
        expected = float((model(x).argmax(1) == y).float().mean())
    assert results["clean_accuracy"] == pytest.approx(expected)
    assert results["clean_n"] == 64 and results["rows"][0]["n"] == 64
    assert results["eps_star"]["gaussian"]["n"] == 16
    assert results["eps_star"]["adversarial"]["generator_data"] == "train split (59000 images)"
    assert "validation split" in (out / "report.md").read_text()

    override = run_dir / "override"
    rc = _eval(
        [
            "--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--generated",
            "--split", "val", "--val-size", "500", "--split-seed", "1", "--limit", "8",
            "--corruptions", "fog", "--severities", "1", "--out", str(override),
        ],
        mnist_root,
    )  # fmt: skip
    assert rc == 0
    request = json.loads((override / "results.json").read_text())["metadata"]["request"]
    assert (request["val_size"], request["split_seed"]) == (500, 1)


def test_val_split_without_generated_exits_2(
    run_dir: Path, mnist_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--split", "val"]
    rc = _eval([*argv, "--out", str(out)], mnist_root)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--split val needs --generated" in err
    assert not out.exists()


def test_unreachable_eps_star_epsilon_exits_2_before_any_work(
    run_dir: Path, mnist_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    rc = _eval(
        [
            "--checkpoint", str(run_dir), "--benchmark", "mnist-c", "--generated",
            "--eps-star", "adversarial", "--eps-star-epsilon", "25", "--out", str(out),
        ],
        mnist_root,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    # Below MNIST's largest distance (28), but out of Gaussian noise's reach on most digits.
    assert "--eps-star-epsilon 25 cannot be reached" in err and "no gradient" in err
    assert not out.exists()
