"""Search spaces: what each tunes, in the config's units, and their scheduler."""

import math
from pathlib import Path

from tune_spaces import SPACES, grid_values
from tune_spaces.spaces import space_bounds


def test_only_epsilon_bounds_scale_with_image_size():
    # (tests/unit/test_sizes.py checks the epsilon range itself)
    assert SPACES["ant_epsilon"].per_image_size
    assert space_bounds(SPACES["gnt_sigma"], num_coordinates=784) == (0.05, 1.0)


def test_overrides_and_grid():
    assert SPACES["gnt_sigma"].overrides(0.3) == ["noise.sigmas=[0.3]"]
    assert SPACES["ant_epsilon"].overrides(8.0) == ["ant.epsilon=8.0"]
    restarts = SPACES["ant_restart_iterations"]
    assert restarts.overrides(300.0) == ["ant.restart_iterations=300"]
    assert space_bounds(restarts, num_coordinates=784) == (50, 2000)
    values = grid_values(0.1, 1.0, 3)
    assert values[0] == 0.1 and values[-1] == 1.0 and math.isclose(values[1], 0.3162, rel_tol=1e-3)


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_asha_stops_weak_trials_early_but_lets_every_trial_finish_its_last_epoch():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from tune_spaces import asha_scheduler

    def decisions(scheduler):
        scheduler.set_search_properties("acc", "max")
        good, weak, last = _Trial("good"), _Trial("weak"), _Trial("last")
        for t in (good, weak, last):
            scheduler.on_trial_add(None, t)
        early = [
            scheduler.on_trial_result(None, good, {"training_iteration": 1, "acc": 0.9}),
            scheduler.on_trial_result(None, weak, {"training_iteration": 1, "acc": 0.1}),
        ]
        final = scheduler.on_trial_result(None, last, {"training_iteration": 4, "acc": 0.05})
        scheduler.on_trial_complete(None, last, {"training_iteration": 4, "acc": 0.05})
        return early, final

    early, final = decisions(asha_scheduler(max_epochs=4))
    assert early == [TrialScheduler.CONTINUE, TrialScheduler.STOP]  # a rung still cuts
    assert final == TrialScheduler.CONTINUE  # the last epoch ends the trial by itself
    plain = ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    assert decisions(plain)[1] == TrialScheduler.STOP  # what Ray's ASHA answers there


def test_every_space_matches_a_noise_mode_and_overrides_a_valid_config():
    from orchestrator.config import load_config
    from orchestrator.tune_runner import REQUIRED_MODE

    assert set(REQUIRED_MODE) == set(SPACES)
    repo = Path(__file__).resolve().parents[2]
    config = {"gnt": repo / "configs/mnist_gnt.yaml", "ant": repo / "configs/mnist_ant1x1.yaml"}
    for name, space in SPACES.items():
        low, high = space_bounds(space, num_coordinates=784)
        for value in (low, high):
            cfg = load_config(config[REQUIRED_MODE[name]], space.overrides(value))
            assert cfg.noise.mode == REQUIRED_MODE[name]


def test_sampled_restart_iterations_are_whole_numbers_in_range():
    from ray.tune.search.sample import Integer

    from tune_spaces import param_space

    domain = param_space(SPACES["ant_restart_iterations"], num_coordinates=784)["value"]
    assert isinstance(domain, Integer)
    draws = [domain.sample() for _ in range(200)]
    assert all(isinstance(v, int) and 50 <= v <= 2000 for v in draws)
