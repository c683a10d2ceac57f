"""Every epsilon is an l2 size in [0, 1] pixel units over the whole image: the default is
ImageNet's 135 at the dataset's image size, a size at or above the dataset's largest
distance (sqrt of its number of coordinates) is refused before anything starts, and
``antray config show`` gives each size in both units (docs/METHOD.md, "Images and sizes")."""

import math
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.errors import UserError
from orchestrator.tune_runner import check_space_values
from trainers.data import IMAGE_SPECS
from tune_spaces import SPACES, SearchSpace
from tune_spaces.spaces import space_bounds

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
ANT = str(REPO / "configs/mnist_ant1x1.yaml")


@pytest.mark.parametrize(
    "dataset, expected", [("mnist", 9.743), ("cifar10", 19.286), ("imagenet", 135.0)]
)
def test_the_default_epsilon_is_imagenets_135_at_the_datasets_image_size(dataset, expected):
    cfg = load_config(None, [f"data.dataset={dataset}"])
    assert cfg.ant.epsilon == pytest.approx(expected, abs=1e-3)
    n = IMAGE_SPECS[dataset].num_coordinates
    assert cfg.ant.epsilon / math.sqrt(n) == pytest.approx(135 / math.sqrt(3 * 224 * 224))


def test_antray_train_without_a_config_trains_at_a_reachable_size():
    cfg = load_config(None)  # what `antray train` without --config trains
    assert cfg.data.dataset == "mnist" and cfg.ant.epsilon < 28
    assert "epsilon: 9.74" in cfg.to_yaml()  # the resolved config saved with a run says so


@pytest.fixture
def no_ray():
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized(), "refused before Ray starts"


REFUSED = [
    ("train", ["train", "--config", ANT, "--set", "ant.epsilon=28"], "28"),
    ("train local", ["train", "--backend", "local", "--set", "ant.epsilon=135"], "135"),
    ("config show", ["config", "show", "--set", "ant.epsilon=40"], "40"),
    ("tune grid", ["tune", "--config", ANT, "--space", "ant_epsilon", "--grid", "8,28"], "28"),
]


@pytest.mark.parametrize("name, argv, value", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_size_at_or_above_the_largest_distance_is_refused(
    name, argv, value, tmp_path, capsys, no_ray
):
    out = tmp_path / "out"
    flag = {"train": ["--run-dir", str(out)], "tune": ["--out", str(out)]}.get(argv[0], [])
    assert main([*argv, *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"ant.epsilon={value} is at or above 28, the largest l2 distance" in err, err
    assert "28x28x1" in err and "sqrt(784)" in err
    assert not out.exists()


def test_the_checks_before_a_run_refuse_a_size_set_after_validation(tmp_path, no_ray):
    from orchestrator import preflight
    from orchestrator.train import train_from_config

    cfg = load_config(ANT)
    cfg = cfg.model_copy(update={"ant": cfg.ant.model_copy(update={"epsilon": 30.0})})
    with pytest.raises(UserError, match=r"ant.epsilon=30 is at or above 28, the largest l2"):
        preflight.check_epsilon(cfg)
    with pytest.raises(UserError, match="ant.epsilon=30"):
        train_from_config(cfg, tmp_path / "run", backend="local", track=False)
    assert not (tmp_path / "run").exists()


def test_a_sampled_range_reaching_past_the_limit_is_refused():
    cfg = load_config(ANT)
    check_space_values(cfg, SPACES["ant_epsilon"], None)  # the shipped range: fine
    wide = SearchSpace("wide", "ant.epsilon", 19.4, 500.0, "too wide", per_image_size=True)
    with pytest.raises(
        UserError,
        match=r"--space wide \(samples ant.epsilon from 1.4 to 36.08\): ant.epsilon=36.08",
    ):
        check_space_values(cfg, wide, None)
    check_space_values(cfg, wide, [4.0, 8.0])  # a grid replaces the range


def test_the_epsilon_range_is_imagenets_l2_range_carried_to_the_image_size():
    imagenet = space_bounds(SPACES["ant_epsilon"], num_coordinates=3 * 224 * 224)
    mnist = space_bounds(SPACES["ant_epsilon"], num_coordinates=784)
    assert imagenet == pytest.approx((19.4, 233.0)) and imagenet[0] < 135 < imagenet[1]
    assert mnist == pytest.approx((19.4 * 28 / 388, 233 * 28 / 388), rel=1e-3)
    assert mnist[1] < 19.8  # below MNIST's saturation size (docs/METHOD.md)


def test_config_show_gives_each_size_in_both_units(capsys):
    assert main(["config", "show", "--config", ANT]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == load_config(ANT).to_dict()  # the sizes are comments
    sizes = [line for line in out.splitlines() if line.startswith("#")]
    assert "28x28x1 images, N = 784 coordinates" in sizes[0]
    assert "ant.epsilon 8 (l2) = 0.2857 per coordinate" in sizes[1] and "below 28" in sizes[1]
    assert "noise.sigmas 0.5 (per coordinate): l2 about 14" in sizes[2]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_configs_sizes_are_within_reach_of_its_dataset(path):
    """epsilon below the largest l2 distance sqrt(N); sigma and speckle levels (sizes per
    coordinate) below 1, the largest distance per coordinate."""
    cfg = load_config(path)
    spec = IMAGE_SPECS[cfg.data.dataset]
    assert 0 < cfg.ant.epsilon < spec.largest_distance
    assert all(0 <= s < 1 for s in (*cfg.noise.sigmas, *cfg.noise.speckle_levels))
