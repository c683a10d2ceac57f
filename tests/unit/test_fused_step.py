"""The fused ANT step (``ant.step: fused``, issue 36): one forward and one backward of the
classifier on the mixed batch train both players. Checked in float64 against autograd on
the losses written out here: the generator's gradient is minus the gradient of the batch's
mean loss on its share, the classifier's update is a plain step on the same mixed batch, a
2-process DDP run (gloo) all-reduces both; and both ANT steps checkpoint and resume."""

import copy
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from generators.networks import create_generator
from generators.rescale import clipping_aware_rescale
from orchestrator.config import load_config
from orchestrator.local_runner import inline_service
from trainers.checkpoint_format import load_state
from trainers.device import Precision
from trainers.loop import run_worker
from trainers.mixing import Shares
from trainers.models import create_model
from trainers.steps import StepParts, classifier_step, create_step, fused_ant_step
from trainers.worker_env import LocalEnv

EPSILON = 3.0
CPU = Precision.create("cpu")


def players(seed: int = 0):
    """A float64 Madry CNN and a float64 1x1 generator whose layers are far from the
    identity (weights N(0, 0.3^2)), so the generator's gradient is not a near-zero."""
    torch.manual_seed(seed)
    classifier = create_model("madry_cnn").double()
    generator = create_generator("1x1", channels=1).double()
    for p in generator.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return classifier, generator


def batch(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(
        10, (n,), generator=g
    )


def share_loss(classifier, generator, x, y, *, seed: int, batch_size: int):
    """The current part's contribution to the mixed batch's mean loss, written out: its
    noise is the first draw after ``seed`` (as in the step), its CE summed over its images
    and divided by the whole batch."""
    torch.manual_seed(seed)
    z = torch.randn(generator.latent_shape(*x.shape[:1], *x.shape[2:]), dtype=x.dtype)
    noisy = clipping_aware_rescale(x, generator(z), epsilon=EPSILON)
    return F.cross_entropy(classifier(noisy), y, reduction="sum") / batch_size


def run_fused(classifier, generator, x, y, *, lr: float, replay=(), seed: int = 7, shares=None):
    opt = torch.optim.SGD(classifier.parameters(), lr=lr)
    gopt = torch.optim.SGD(generator.parameters(), lr=lr)
    torch.manual_seed(seed)
    return fused_ant_step(
        classifier,
        opt,
        x,
        y,
        generator=generator,
        generator_optimizer=gopt,
        replay=list(replay),
        epsilon=EPSILON,
        shares=shares or Shares(),
        precision=CPU,
    )


def test_the_generator_gets_minus_the_gradient_of_its_share_of_the_mean_loss():
    classifier, generator = players()
    replay = [create_generator("1x1", channels=1).double() for _ in range(2)]
    x, y = batch(20)  # 10 clean, 6 current, 2 + 2 replay
    m = run_fused(classifier, generator, x, y, lr=0.0, replay=replay)
    assert (m["clean_count"], m["current_count"], m["replay_count"]) == (10, 6, 4)
    fused = [p.grad.clone() for p in generator.parameters()]

    ref_classifier, ref_generator = players()
    loss = share_loss(ref_classifier, ref_generator, x[10:16], y[10:16], seed=7, batch_size=20)
    expected = torch.autograd.grad(loss, list(ref_generator.parameters()))
    for got, want in zip(fused, expected, strict=True):
        assert want.abs().max() > 1e-6  # a gradient that says something
        torch.testing.assert_close(got, -want, rtol=1e-10, atol=1e-12)
    # generator_ce: the current part's mean CE, before the update
    assert m["generator_ce"] == pytest.approx(loss.item() * 20 / 6, rel=1e-6)


def test_the_classifier_update_is_a_plain_step_on_the_same_mixed_batch():
    classifier, generator = players()
    plain = copy.deepcopy(classifier)
    seen = []
    classifier.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    x, y = batch(20)
    replay = [create_generator("1x1", channels=1).double() for _ in range(2)]
    before = [p.detach().clone() for p in generator.parameters()]
    run_fused(classifier, generator, x, y, lr=0.1, replay=replay)
    [mixed] = seen
    assert torch.equal(mixed[:10], x[:10]) and not torch.equal(mixed[10:], x[10:])
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    classifier_step(plain, opt, [("mixed", mixed, y)], CPU)
    for got, want in zip(classifier.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters(), strict=True))


def test_the_fused_step_raises_the_current_generators_loss():
    """One ascent step (SGD) on the generator raises the CE of its share, same noise."""
    classifier, generator = players()
    x, y = batch(20)
    probe = copy.deepcopy(classifier)
    before = share_loss(probe, generator, x[10:], y[10:], seed=7, batch_size=20).item()
    run_fused(classifier, generator, x, y, lr=0.05)  # no history: the current part is 10
    after = share_loss(probe, generator, x[10:], y[10:], seed=7, batch_size=20).item()
    assert after > before


def test_create_step_picks_the_fused_step_once():
    classifier, generator = players()
    classifier, generator = classifier.float(), generator.float()
    parts = StepParts(
        classifier=classifier,
        optimizer=torch.optim.SGD(classifier.parameters(), lr=0.01),
        precision=CPU,
        shares=Shares(),
        epsilon=EPSILON,
        generator=generator,
        generator_optimizer=torch.optim.Adam(generator.parameters(), lr=1e-4),
        replay=list,
        ant_step="fused",
    )
    m = create_step("ant", parts)(*(t.float() if t.is_floating_point() else t for t in batch(8)))
    assert (m["clean_count"], m["current_count"]) == (4, 4) and "generator_ce" in m
    with pytest.raises(KeyError, match="unknown ant step"):
        create_step("ant", StepParts(**{**parts.__dict__, "ant_step": "free"}))


# --- DDP: one backward all-reduces the classifier's and the generator's gradients ---------

WORLD, PER_RANK, LR = 2, 10, 0.5


def _fused_rank(rank: int, port: int, x, y, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    classifier, generator = players()
    classifier, generator = DDP(classifier), DDP(generator)
    part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    shares = Shares(0.5, 0.5, 0.0, 0.0)
    run_fused(classifier, generator, x[part], y[part], lr=LR, seed=100 + rank, shares=shares)
    if rank == 0:  # as numpy arrays: torch's shared-memory handles die with this process
        both = classifier.module, generator.module
        queue.put([{k: v.detach().numpy().copy() for k, v in m.named_parameters()} for m in both])
    dist.barrier()
    dist.destroy_process_group()


def _first_answer(queue, procs, timeout_s: float = 180.0):
    """The queue's first item; fails at once when a rank died without answering."""
    import queue as queues
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=1.0)
        except queues.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a rank exited with {dead}"
    raise AssertionError(f"no answer from rank 0 in {timeout_s} s")


def test_ddp_all_reduces_both_players_in_the_one_backward():
    x, y = batch(WORLD * PER_RANK)
    classifier, generator = players()
    # The global objective: the mean over ranks of each rank's mixed-batch mean loss
    # (first half clean, second half the current generator's, its own noise per rank).
    loss = 0.0
    for rank in range(WORLD):
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        xr, yr, half = x[part], y[part], PER_RANK // 2
        clean = F.cross_entropy(classifier(xr[:half]), yr[:half], reduction="sum") / PER_RANK
        noisy = share_loss(
            classifier, generator, xr[half:], yr[half:], seed=100 + rank, batch_size=PER_RANK
        )
        loss = loss + (clean + noisy) / WORLD
    # After one SGD step: the classifier descends the objective, the generator ascends it.
    named = [(f"c.{k}", p, -LR) for k, p in classifier.named_parameters()]
    named += [(f"g.{k}", p, +LR) for k, p in generator.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p, _ in named])
    want = {k: (p + lr * g).detach() for (k, p, lr), g in zip(named, grads, strict=True)}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_fused_rank, args=(r, port, x, y, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    got_c, got_g = _first_answer(queue, procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    got = {**{f"c.{k}": v for k, v in got_c.items()}, **{f"g.{k}": v for k, v in got_g.items()}}
    assert got.keys() == want.keys()
    for k, value in got.items():
        torch.testing.assert_close(torch.from_numpy(value), want[k], rtol=1e-10, atol=1e-12)


# --- both ANT steps checkpoint and resume (local backend, tiny MNIST) ---------------------

TINY = [
    "data.dataset=mnist",
    "data.val_size=1000",
    "data.limit_train=256",  # 8 steps of 32
    "data.limit_val=64",
    "data.batch_size=32",
    "data.val_suite=none",
    "optim.epochs=2",
    "optim.optimizer=adam",
    "ant.epsilon=6.0",
    "ant.restart_iterations=3",
    "runtime.checkpoint_every_steps=5",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
]


class Preempted(Exception):
    pass


class PreemptedEnv(LocalEnv):
    """Stops the run right after its first mid-epoch checkpoint, as a lost spot node would."""

    def report(self, metrics, state):
        super().report(metrics, state)
        if metrics.get("mid_epoch"):
            raise Preempted


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_both_ant_steps_checkpoint_and_resume(step, mnist_root, tmp_path):
    cfg = load_config(None, [*TINY, f"ant.step={step}"])
    root = str(mnist_root)
    with pytest.raises(Preempted):
        run_worker(cfg, PreemptedEnv(tmp_path), make_service=inline_service, data_root=root)
    saved = load_state(tmp_path / "checkpoint")
    assert saved["mid_epoch"] and (saved["epoch"], saved["epoch_step"]) == (0, 5)
    assert saved["config"]["ant"]["step"] == step
    # The generator's Adam has stepped since the epoch's restart (adopted at step 0 with
    # fresh moments): once per classifier step, in either mode.
    [moments] = list(saved["generator_optimizer"]["state"].values())[:1]
    assert int(moments["step"]) == 5

    final = run_worker(
        cfg, LocalEnv(tmp_path, resume=True), make_service=inline_service, data_root=root
    )
    assert final["step"] == 16 and final["epoch"] == 2
    assert final["restarts_adopted"] == 2 and final["generator_ce"] > 0
    end = load_state(tmp_path / "checkpoint")
    # The second epoch's restart cleared the moments at step 8: 8 more generator steps.
    [moments] = list(end["generator_optimizer"]["state"].values())[:1]
    assert int(moments["step"]) == 8
    adam_steps = int(next(iter(end["optimizer"]["state"].values()))["step"])
    assert adam_steps == 16, "the classifier's optimizer continued from the checkpoint"
