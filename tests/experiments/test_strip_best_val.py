"""experiments/mnist/strip_best_val.py: the copy serves its own epoch, everything else unchanged."""

from pathlib import Path

import torch

from evaluation.model_loading import served_epoch, served_weights
from experiments.mnist import strip_best_val as script
from trainers.checkpoint_format import BEST_VAL_KEY, load_state, save_state


def test_the_copy_serves_its_own_epoch(tmp_path: Path, capsys) -> None:
    own = {"w": torch.ones(2)}
    best = {"w": torch.zeros(2)}
    save_state(
        {"epoch": 7, "model": own, "config": {"a": 1}, BEST_VAL_KEY: {"epoch": 3, "weights": best}},
        tmp_path / "ckpt",
    )
    assert served_epoch(load_state(tmp_path / "ckpt")) == 3
    assert script.main([str(tmp_path / "ckpt"), str(tmp_path / "copy")]) == 0
    copy = load_state(tmp_path / "copy")
    assert BEST_VAL_KEY not in copy and copy["config"] == {"a": 1}
    assert served_epoch(copy) == 7
    assert torch.equal(served_weights(copy)["w"], own["w"])
    assert "epoch 8" in capsys.readouterr().out
    # A checkpoint without the record, or no checkpoint: one line, exit 2.
    assert script.main([str(tmp_path / "copy"), str(tmp_path / "again")]) == 2
    assert script.main([str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert script.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no 'best_val' record" in err[0]
