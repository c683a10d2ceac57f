"""Mixer counts match the paper's shares for every batch size 1..257."""

import pytest

from trainers.mixing import PARTS, Shares, largest_remainder, split_batch, split_replay

SHARE_TABLE = [
    ("ANT", Shares(0.5, 0.3, 0.2, 0.0)),
    ("ANT+SIN", Shares(0.25, 0.30, 0.15, 0.30)),
    ("GNT", Shares(0.5, 0.5, 0.0, 0.0)),
]


@pytest.mark.parametrize("name,shares", SHARE_TABLE, ids=[s[0] for s in SHARE_TABLE])
@pytest.mark.parametrize("has_history", [True, False])
def test_counts_are_exact_for_all_batch_sizes(name, shares, has_history):
    effective = shares if has_history else shares.without_history()
    for batch in range(1, 258):
        counts = split_batch(batch, shares, has_history=has_history)
        assert sum(counts.values()) == batch
        for part in PARTS:
            assert abs(counts[part] - getattr(effective, part) * batch) < 1, (batch, part)
        if not has_history:
            assert counts["replay"] == 0


def test_reference_batch_and_no_history_rule():
    assert split_batch(70, Shares(), has_history=True) == {
        "clean": 35,
        "current": 21,
        "replay": 14,
        "stylized": 0,
    }
    assert split_batch(70, Shares(), has_history=False) == {
        "clean": 35,
        "current": 35,
        "replay": 0,
        "stylized": 0,
    }
    assert split_replay(14, 2) == [7, 7]
    assert split_replay(13, 2) == [7, 6]
    assert largest_remainder(7, [0.5, 0.3, 0.2]) == [4, 2, 1]


def test_ant_sin_keeps_replay_at_the_reference_batch():
    # The paper: 25 % clean, 30 % stylized, 45 % generator noise; the current generator keeps
    # its 30 % and replay fills the rest, as in the reference's generate_noisy_data.
    counts = split_batch(70, Shares(0.25, 0.30, 0.15, 0.30), has_history=True)
    assert counts == {"clean": 18, "current": 21, "replay": 10, "stylized": 21}
    assert split_batch(70, Shares(0.25, 0.30, 0.15, 0.30), has_history=False) == {
        "clean": 18,
        "current": 31,
        "replay": 0,
        "stylized": 21,
    }


def test_bad_shares_rejected():
    with pytest.raises(ValueError):
        Shares(0.5, 0.5, 0.5, 0.0)
