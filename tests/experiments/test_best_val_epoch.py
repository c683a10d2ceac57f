"""experiments/mnist/best_val_epoch.py: from every kept checkpoint of a ``select_epoch: last``
run, the epoch a ``best_val`` run of the same training serves."""

from pathlib import Path

from experiments.mnist import best_val_epoch as script
from trainers.checkpoint_format import BEST_VAL_KEY, load_state, save_state
from trainers.worker_env import LocalEnv


class EveryEpochKept(LocalEnv):
    """Saves each end-of-epoch checkpoint in its own directory, as Ray Train does with
    ``runtime.checkpoints_to_keep`` >= the epochs."""

    kept = 0

    def report(self, metrics, state):
        super().report(metrics, state)
        if state is not None and not metrics.get("mid_epoch"):
            self.kept += 1
            save_state(state, self.run_dir / "ray" / "train" / f"checkpoint_{self.kept}")


def test_the_script_picks_the_epoch_best_val_serves_from_kept_checkpoints(
    tmp_path, capsys, train_tiny
):
    last = tmp_path / "last"
    train_tiny(last, "noise.mode=vanilla", "optim.epochs=4", env=EveryEpochKept(last))
    best = train_tiny(
        tmp_path / "best", "noise.mode=vanilla", "optim.epochs=4", "optim.select_epoch=best_val"
    )
    served = load_state(best / "checkpoint")[BEST_VAL_KEY]["epoch"]
    capsys.readouterr()
    assert script.main([str(last)]) == 0
    out = capsys.readouterr().out
    assert "4 of its 4 epochs kept" in out
    assert f"epoch {served + 1}: " in out.split("<- best_val")[0].splitlines()[-1]
    chosen = Path(out.strip().splitlines()[-1].split("chosen: ")[1])
    assert chosen == last / "ray" / "train" / f"checkpoint_{served + 1}"
    assert load_state(chosen)["epoch"] == served


def test_the_script_refuses_a_directory_without_checkpoints(tmp_path, capsys):
    assert script.main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
