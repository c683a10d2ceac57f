"""Configs: every shipped YAML loads; bad input is one line on stderr and exit 2."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.errors import UserError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
MNIST = Path(__file__).resolve().parents[2] / "configs" / "mnist_vanilla.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.experiment.name


SIN_CONFIGS = [p for p in CONFIGS if p.name.endswith("_sin.yaml")]


@pytest.mark.parametrize("path", SIN_CONFIGS, ids=[p.name for p in SIN_CONFIGS])
def test_ant_sin_configs_keep_replay(path):
    shares = load_config(path).noise.shares
    assert (shares.clean, shares.stylized) == (0.25, 0.30)
    assert shares.current == 0.30 and shares.replay == pytest.approx(0.15)


def test_imagenet_configs_split_the_papers_batch_of_70():
    for path in (p for p in CONFIGS if p.name.startswith("imagenet_")):
        cfg = load_config(path)
        assert cfg.data.batch_size == 70 and 70 % cfg.runtime.max_workers == 0, path.name


def test_elastic_range_and_fixed_count_read_alike():
    fixed, elastic = (
        load_config(None, ["runtime.num_workers=3"]).runtime,
        load_config(None, ["runtime.num_workers=[2, 4]"]).runtime,
    )
    assert (fixed.worker_range, fixed.elastic) == ((3, 3), False)
    assert (elastic.worker_range, elastic.elastic) == ((2, 4), True)
    # A range survives the round trip to the workers (config dict -> YAML -> config).
    again = load_config(None, ["runtime.num_workers=" + str(list(elastic.num_workers))])
    assert again.runtime == elastic


def test_overrides_apply_and_parse_types():
    cfg = load_config(None, ["optim.epochs=3", "noise.sigmas=[0.1, 0.2]", "runtime.amp=true"])
    assert cfg.optim.epochs == 3 and cfg.noise.sigmas == (0.1, 0.2) and cfg.runtime.amp is True


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(ValidationError):
        cfg.optim.epochs = 5  # type: ignore[misc]


BAD = [
    ("unknown key", ["ant.bogus=1"], "ant.bogus: unknown key"),
    ("unknown section", ["trainer.batch_size=1"], "trainer: unknown key"),
    ("wrong type", ["optim.epochs=many"], "optim.epochs"),
    ("sigma < 0", ["noise.sigmas=[-0.1]"], "noise.sigmas.0"),
    ("epsilon = 0", ["ant.epsilon=0"], "ant.epsilon"),
    ("epsilon < 0", ["ant.epsilon=-3"], "ant.epsilon"),
    ("shares do not sum to 1", ["noise.shares.clean=0.9"], "noise.shares"),
    ("share out of range", ["noise.shares.clean=1.5"], "noise.shares.clean"),
    (
        "global batch smaller than the workers",
        ["data.batch_size=3", "runtime.num_workers=4"],
        "data.batch_size=3 cannot be split over 4 workers",
    ),
    (
        "global batch no size of an elastic range can split",
        ["data.batch_size=2", "runtime.num_workers=[3, 5]"],
        "data.batch_size=2 cannot be split over 5 workers (runtime.num_workers=[3, 5])",
    ),
    (
        "elastic range with min > max",
        ["runtime.num_workers=[4, 2]"],
        "runtime.num_workers: [min, max] needs min <= max, got [4, 2]",
    ),
    (
        "elastic range with min below 1",
        ["runtime.num_workers=[0, 2]"],
        "runtime.num_workers: [min, max] needs min >= 1, got [0, 2]",
    ),
    ("elastic range of three", ["runtime.num_workers=[1, 2, 3]"], "expected a number or"),
    ("zero workers", ["runtime.num_workers=0"], "runtime.num_workers: expected a whole number"),
    (
        "stylized share outside ANT",
        [
            "noise.mode=gnt",
            "noise.shares.clean=0.5",
            "noise.shares.current=0.2",
            "noise.shares.replay=0",
            "noise.shares.stylized=0.3",
        ],
        "needs mode ant",
    ),
    (
        "stylized share without ImageNet",
        [
            "noise.shares.clean=0.25",
            "noise.shares.current=0.3",
            "noise.shares.replay=0.15",
            "noise.shares.stylized=0.3",
        ],
        "needs data.dataset=imagenet",
    ),
    ("unknown validation suite", ["data.val_suite=mnist-x"], "data.val_suite"),
    (
        "validation suite of another dataset",
        ["data.val_suite=cifar10-c"],
        "data.val_suite=cifar10-c corrupts cifar10 images, but data.dataset=mnist",
    ),
    (
        "validation suite without a validation split",
        ["data.val_suite=mnist-c", "data.val_size=0"],
        "data.val_suite=mnist-c needs a validation split, but data.val_size=0",
    ),
    ("validation suite of no images", ["data.val_suite_images=0"], "data.val_suite_images"),
    ("a retired key", ["data.limit_test=128"], "data.limit_test: no longer a key"),
    ("unknown ANT step", ["ant.step=free"], "ant.step: Input should be 'alternating' or 'fused'"),
    (
        "fused step without a current share",
        ["ant.step=fused", "noise.shares.clean=0.8", "noise.shares.current=0"],
        "ant.step=fused trains the generator on its own share of each batch: "
        "it needs noise.shares.current > 0",
    ),
    ("a section that is not a mapping", ["data=[1, 2]"], "data: Input should be a valid dict"),
]


@pytest.mark.parametrize("name,overrides,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(name, overrides, expected, capsys):
    argv = ["config", "show"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_unknown_key_in_file_names_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {epochs: 1, learning_rate: 0.1}\n")
    assert main(["config", "show", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "optim.learning_rate: unknown key" in err


def test_a_config_saved_by_an_earlier_version_still_loads(tmp_path):
    """A resolved config.yaml (what --resume reads) with a retired key at its default."""
    saved = load_config(MNIST).to_dict()
    saved["data"]["limit_test"] = None
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert load_config(path) == load_config(MNIST)


def test_missing_config_file():
    with pytest.raises(UserError, match="not found"):
        load_config("/nonexistent/x.yaml")


def test_missing_data_exits_2(tmp_path, capsys):
    code = main(
        [
            "train",
            "--backend",
            "local",
            "--config",
            str(MNIST),
            "--data-root",
            str(tmp_path),
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "MNIST" / "raw") in err


def test_existing_run_dir_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    code = main(["train", "--backend", "local", "--run-dir", str(run)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (run / "keep.txt").read_text() == "precious"


def test_cuda_config_without_cuda_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main(
        [
            "train",
            "--backend",
            "local",
            "--config",
            str(MNIST),
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "runtime.device=cuda",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "runtime.device=cpu" in err


def test_mode_and_benchmark_names_are_their_registries_keys():
    """Each name is listed once, beside what it names; the config takes its choices there."""
    from typing import get_args

    from evaluation.benchmarks import BENCHMARKS, Benchmark
    from evaluation.corruptions.suites import generated_suite
    from evaluation.request import CLEAN_DATASETS
    from orchestrator.config import DataSection, NoiseSection
    from trainers.steps import STEPS, Mode

    assert list(get_args(Mode)) == list(STEPS)
    assert list(get_args(Benchmark)) == list(BENCHMARKS) == list(CLEAN_DATASETS)
    assert all(generated_suite(name).benchmark == name for name in BENCHMARKS)
    assert NoiseSection.model_fields["mode"].annotation == Mode
    assert get_args(DataSection.model_fields["val_suite"].annotation)[0] == Benchmark


def test_what_training_reads_is_in_the_config():
    """trainers.train_config names, per section, the keys the loop reads: each is a key of
    ExperimentConfig (trainers/ cannot import it, so this keeps the two in step)."""
    import typing

    import trainers.train_config as keys
    from orchestrator.config import ExperimentConfig

    cfg = load_config(None)
    for section, protocol in typing.get_type_hints(keys.TrainConfig).items():
        model = type(getattr(cfg, section))
        assert model is ExperimentConfig.model_fields[section].annotation, section
        names = [n for n in protocol.__annotations__ if not n.startswith("_")]
        missing = [n for n in names if n not in model.model_fields]
        assert names and not missing, (section, missing)
    assert set(keys.SharesKeys.__annotations__) == set(type(cfg.noise.shares).model_fields)
