"""One ANT step and one GNT step run and report every part; each mode's step is chosen
once. (That a vanilla Madry CNN learns real MNIST: tests/integration/test_training_runs.py.)"""

import pytest
import torch

from generators.networks import create_generator
from generators.samplers import GaussianNoise
from trainers.device import Precision
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.steps import StepParts, ant_step, create_step, noise_step


def test_ant_and_gnt_steps_report_every_part():
    torch.manual_seed(0)
    precision = Precision.create("cpu")
    model = create_model("madry_cnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(20, 1, 28, 28), torch.randint(10, (20,))
    gen = create_generator("1x1", channels=1)
    gopt = torch.optim.Adam(gen.parameters(), lr=1e-4)
    old = [create_generator("1x1", channels=1), create_generator("1x1", channels=1)]
    m = ant_step(
        model,
        opt,
        x,
        y,
        generator=gen,
        generator_optimizer=gopt,
        replay=old,
        epsilon=5.0,
        shares=Shares(),
        precision=precision,
    )
    assert (m["clean_count"], m["current_count"], m["replay_count"]) == (10, 6, 4)
    m = ant_step(
        model,
        opt,
        x,
        y,
        generator=gen,
        generator_optimizer=gopt,
        replay=[],
        epsilon=5.0,
        shares=Shares(),
        precision=precision,
    )
    assert (m["clean_count"], m["current_count"]) == (10, 10) and "replay_count" not in m
    m = noise_step(model, opt, x, y, sampler=GaussianNoise([0.5]), precision=precision)
    assert (m["clean_count"], m["noise_count"]) == (10, 10)


def test_ant_sin_step_trains_stylized_and_replay_parts():
    torch.manual_seed(0)
    precision = Precision.create("cpu")
    model = create_model("madry_cnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(20, 1, 28, 28), torch.randint(10, (20,))
    stylized = torch.rand(6, 1, 28, 28), torch.randint(10, (6,))
    gen = create_generator("1x1", channels=1)
    m = ant_step(
        model,
        opt,
        x,
        y,
        generator=gen,
        generator_optimizer=torch.optim.Adam(gen.parameters(), lr=1e-4),
        replay=[create_generator("1x1", channels=1), create_generator("1x1", channels=1)],
        epsilon=5.0,
        shares=Shares(0.25, 0.30, 0.15, 0.30),
        precision=precision,
        stylized=stylized,
    )
    counts = tuple(m[f"{p}_count"] for p in ("clean", "current", "replay", "stylized"))
    assert counts == (5, 6, 3, 6)


@pytest.mark.parametrize(
    "mode,parts",
    [
        ("vanilla", {"clean"}),
        ("gnt", {"clean", "noise"}),
        ("speckle", {"clean", "noise"}),
        ("ant", {"clean", "current"}),
    ],
)
def test_step_function_is_chosen_once_per_mode(mode, parts):
    torch.manual_seed(0)
    model = create_model("madry_cnn")
    gen = create_generator("1x1", channels=1)
    step = create_step(
        mode,
        StepParts(
            classifier=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            precision=Precision.create("cpu"),
            shares=Shares(),
            epsilon=5.0,
            generator=gen,
            generator_optimizer=torch.optim.Adam(gen.parameters(), lr=1e-4),
            replay=list,  # no history yet
        ),
    )
    m = step(torch.rand(8, 1, 28, 28), torch.randint(10, (8,)))
    assert {k[: -len("_count")] for k in m if k.endswith("_count")} == parts
