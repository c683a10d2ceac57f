"""The loop trains what the paper trains (issue 14): a global batch split over workers,
validation on a split of the training images (never the test set), the reference's
restart and replay schedule, cheap rank agreement, and mid-epoch checkpoints that resume
at their step. Single process (``LocalEnv``), no Ray."""

import shutil

import pytest
import torch

import trainers.data
import trainers.run
from orchestrator.local_runner import inline_service
from trainers.checkpoint_format import load_state
from trainers.loop import run_worker
from trainers.run import setup_run

# --- 1. the batch is global -------------------------------------------------------------


def test_global_batch_is_split_over_workers(fake_env, tiny, tmp_path):
    env = fake_env(tmp_path, world_size=2)
    metrics = run_worker(tiny("noise.mode=vanilla", "runtime.num_workers=2"), env)
    assert env.loaders[0].batch_size == 16, "data.batch_size=32 over 2 workers"
    # This rank's half of the 256 training images, 16 at a time: 8 updates per epoch,
    # the same number of updates (and generator steps) as one worker with batch 32.
    assert metrics["step"] == 8


# --- 2. validation split, never the test set --------------------------------------------


def _spy_on_dataset_loads(monkeypatch) -> list[bool]:
    calls: list[bool] = []
    real = trainers.data.load_dataset

    def spy(name, root, *, train, **kw):
        calls.append(train)
        return real(name, root, train=train, **kw)

    monkeypatch.setattr(trainers.data, "load_dataset", spy)
    monkeypatch.setattr("trainers.loop.load_dataset", spy, raising=False)  # older loops
    return calls


MNIST_SMALL = [
    "data.dataset=mnist",
    "data.val_size=1000",
    "data.limit_train=256",
    "data.limit_val=128",
    "data.batch_size=64",
]


def test_training_reads_the_training_files_only(tiny, mnist_root, tmp_path, monkeypatch):
    """`antray train` (checks before start, then training) on a data root that holds
    MNIST's training files only: the test images are for `antray eval`."""
    from orchestrator.train import train_from_config

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_root / "MNIST" / "raw" / name, raw / name)
    calls = _spy_on_dataset_loads(monkeypatch)
    cfg = tiny(*MNIST_SMALL)  # ANT: the inline restarts read batches too
    metrics = train_from_config(
        cfg, tmp_path / "run", backend="local", data_root=str(tmp_path / "data"), track=False
    )
    assert calls and all(calls), "the test set (train=False) was loaded during training"
    assert "val_clean_acc" in metrics and "val_generator_acc" in metrics


def test_validation_images_are_disjoint_from_training_images(fake_env, tiny, mnist_root, tmp_path):
    cfg = tiny(*MNIST_SMALL, "noise.mode=vanilla")
    run = setup_run(cfg, fake_env(tmp_path), data_root=str(mnist_root))
    train, val = run.batches.loader.dataset, run.batches.val_loader.dataset
    assert len(val) == 128 and len(train) == 256
    assert set(train.indices).isdisjoint(val.indices)
    train_images = {x.numpy().tobytes() for x, _ in train}
    assert not any(x.numpy().tobytes() in train_images for x, _ in val)


def test_val_size_zero_means_no_per_epoch_validation(fake_env, tiny, tmp_path):
    env = fake_env(tmp_path)
    metrics = run_worker(tiny("noise.mode=vanilla", "data.val_size=0"), env)
    assert metrics["step"] == 8 and not any(k.startswith("val_") for k in metrics)


# --- 3. the reference's restart and replay schedule -------------------------------------


def _recording_service(adopted: list):
    def make(**kw):
        service = inline_service(**kw)
        poll = service.poll_restart

        def recording_poll():
            ready = poll()
            if ready is not None:
                adopted.append({k: v.clone() for k, v in ready.items()})
            return ready

        service.poll_restart = recording_poll
        return service

    return make


def test_one_epoch_already_restarts_and_replays_the_restarted_generator(fake_env, tiny, tmp_path):
    adopted: list = []
    metrics = run_worker(tiny(), fake_env(tmp_path), make_service=_recording_service(adopted))
    assert metrics["restarts_adopted"] == 1 and metrics["restarts_adopted_epoch"] == 1
    assert metrics["replay_size"] == 1 and metrics["replay_size_at_start"] == 0
    assert metrics["train_replay_acc"] >= 0, "the replay share was trained in epoch 1"
    saved = load_state(tmp_path / "checkpoint")
    [(_, snapshot)] = saved["service"]["replay"]["items"]
    # The history holds the freshly restarted generator, as the reference's save_models
    # writes it before the epoch's joint training, not the jointly trained one.
    assert all(torch.equal(snapshot[k], adopted[0][k]) for k in snapshot)
    assert any(not torch.equal(saved["generator"][k], snapshot[k]) for k in snapshot)


SCHEDULES = [
    # (overrides, restarts adopted, replay size) after 8 steps per epoch
    ([], 1, 1),
    (["optim.epochs=2"], 2, 2),
    (["ant.restart_every_steps=3"], 3, 3),  # steps 0, 3, 6
    (["ant.restart_every_steps=3", "ant.snapshot_every_steps=4"], 3, 2),  # after 4, 8
    (["ant.restart_iterations=0"], 0, 1),  # no restarts: the current one per epoch
]


@pytest.mark.parametrize("overrides,adopted,replay", SCHEDULES, ids=lambda v: str(v))
def test_restart_and_snapshot_schedules(fake_env, tiny, tmp_path, overrides, adopted, replay):
    metrics = run_worker(tiny(*overrides), fake_env(tmp_path), make_service=inline_service)
    assert (metrics["restarts_adopted"], metrics["replay_size"]) == (adopted, replay)
    assert metrics["restarts_skipped_epoch"] == 0 and metrics["steps_while_restarting_epoch"] == 0


def test_generator_weights_travel_only_when_a_restart_is_adopted(fake_env, tiny, tmp_path):
    env = fake_env(tmp_path, world_size=2)
    cfg = tiny("runtime.num_workers=2", "ant.restart_every_steps=3")
    metrics = run_worker(cfg, env, make_service=inline_service)
    weights = [b for b in env.broadcasts if isinstance(b, dict)]
    flags = [b for b in env.broadcasts if isinstance(b, list)]
    assert len(weights) == metrics["restarts_adopted"] == 3
    assert len(flags) == 8 and all(len(f) == 2 for f in flags), "one small agreement per step"


# --- 6. mid-epoch checkpoints -------------------------------------------------------------


def _recording_steps(monkeypatch) -> list:
    seen: list = []
    real = trainers.run.create_step

    def create(mode, parts):
        step = real(mode, parts)

        def recorded(x, y):
            seen.append((tuple(y.tolist()), float(x.sum())))
            return step(x, y)

        return recorded

    monkeypatch.setattr(trainers.run, "create_step", create)
    return seen


def test_mid_epoch_checkpoint_resumes_at_its_step(fake_env, tiny, tmp_path, monkeypatch):
    seen = _recording_steps(monkeypatch)
    cfg = tiny("noise.mode=vanilla", "optim.epochs=2", "runtime.checkpoint_every_steps=5")
    calm = run_worker(cfg, fake_env(tmp_path / "calm"))
    calm_batches, calm_state = list(seen), load_state(tmp_path / "calm" / "checkpoint")
    seen.clear()

    run = tmp_path / "run"
    with pytest.raises(fake_env.Preempted):
        run_worker(cfg, fake_env(run, preempt_mid_epoch=True))
    saved = load_state(run / "checkpoint")
    assert saved["mid_epoch"] and (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 5, 5)
    resumed = run_worker(cfg, fake_env(run, resume=True))

    assert seen == calm_batches, "the resumed run trains the remaining batches, in order"
    assert resumed["step"] == calm["step"] == 16
    final = load_state(run / "checkpoint")
    for name, value in calm_state["model"].items():
        assert torch.allclose(final["model"][name], value, atol=1e-6), name
