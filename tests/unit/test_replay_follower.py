"""The worker side of the replay store never waits and never loses history (no Ray
instance: the store and Ray's wait/get are fakes the test controls)."""

import pytest
import ray
import torch

from generators.networks import create_generator
from generators.replay import ReplayStore
from orchestrator.generator_client import ReplayFollower
from orchestrator.replay_actor import ReplayStoreActor
from trainers.generator_service import ReplayCache


class Ref:
    """A pending remote result: not ready until the test says so."""

    def __init__(self, value=None, error: BaseException | None = None, ready: bool = False):
        self.value, self.error, self.done = value, error, ready


class Calls:
    gets = 0

    @staticmethod
    def ready(refs):
        return all(r.done for r in refs)

    @classmethod
    def get(cls, refs):
        cls.gets += 1
        assert all(r.done for r in refs), "a get on something not ready would block"
        for r in refs:
            if r.error is not None:
                raise r.error
        # An actor answers when its method runs: a callable value is read at that time.
        return [r.value() if callable(r.value) else r.value for r in refs]


class Method:
    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def remote(self, *args):
        ref = self.owner.answer(self.name, *args)
        self.owner.calls.append((self.name, args, ref))
        return ref


class FakeStore:
    """Answers ``index`` with whatever the test set; ``answer_now`` decides readiness."""

    def __init__(self):
        self.calls: list = []
        self.index_value = ("inc-1", 0, [], False)
        self.answer_now = True

    def answer(self, name, *args):
        if name == "index":
            return Ref(lambda: self.index_value, ready=self.answer_now)
        return Ref(0, ready=True)

    def __getattr__(self, name):
        return Method(self, name)

    def sent(self, name):
        return [args for n, args, _ in self.calls if n == name]


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def snapshot(seed: int):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in create_generator("1x1", channels=1).state_dict().items()}


def service(store, *, rank=0, clock=None):
    return ReplayFollower(
        store,
        ReplayCache("1x1", 1, torch.device("cpu"), seed=rank),
        rank=rank,
        refresh_every=1,
        calls=Calls,
        clock=clock or Clock(),
    )


def test_a_slow_store_never_holds_a_step():
    store = FakeStore()
    store.answer_now = False
    svc = service(store)
    Calls.gets = 0
    for _ in range(5):
        assert svc.sample(2) == []
    assert Calls.gets == 0, "nothing was fetched while the index had not arrived"
    assert len(store.sent("index")) == 1, "one index request in flight, not one per step"


def test_snapshots_arrive_in_the_background_then_are_cached():
    store = FakeStore()
    s0, s1 = snapshot(0), snapshot(1)
    r0, r1 = Ref(s0), Ref(s1)  # snapshot objects still on their way
    store.index_value = ("inc-1", 2, [(0, r0), (1, r1)], False)
    svc = service(store)
    assert svc.sample(2) == []  # index arrives, fetch starts, nothing ready yet
    r0.done = r1.done = True
    assert len(svc.sample(2)) == 2
    assert sorted(svc.cache.modules) == [0, 1]


def test_a_snapshot_whose_owner_died_costs_a_refresh_not_the_worker():
    store = FakeStore()
    lost = Ref(error=ray.exceptions.OwnerDiedError("ab" * 14, None, ""), ready=True)
    store.index_value = ("inc-1", 1, [(0, lost)], False)
    svc = service(store)
    svc.sample(2)  # no exception
    assert svc.refresh_failures == 1
    # A fresh index was asked for at once: the store's current entries replace the lost one.
    store.index_value = ("inc-1", 2, [(1, Ref(snapshot(1), ready=True))], False)
    svc.sample(2)
    assert sorted(svc.cache.modules) == [1]


def test_an_index_that_never_comes_is_abandoned_and_asked_again():
    store = FakeStore()
    store.answer_now = False
    clock = Clock()
    svc = service(store, clock=clock)
    svc.sample(1)
    clock.now += svc.INDEX_TIMEOUT_S + 1
    svc.sample(1)  # abandons the old request ...
    svc.sample(1)  # ... and sends a new one
    assert svc.refresh_failures == 1
    assert len(store.sent("index")) == 2


def _follow(svc, store, items, incarnation="inc-1", version=None):
    store.index_value = (
        incarnation,
        version if version is not None else len(items),
        [(i, Ref(s, ready=True)) for i, s in items],
        False,
    )
    svc.sample(1)


def test_restarted_store_is_refilled_from_the_cache_when_it_is_newer_than_the_checkpoint():
    store = FakeStore()
    svc = service(store)
    snaps = {i: snapshot(i) for i in range(4)}
    _follow(svc, store, [(0, snaps[0]), (1, snaps[1])])
    svc.last_saved = {"items": [(0, snaps[0]), (1, snaps[1])], "next_id": 2, "version": 2}
    _follow(svc, store, [(i, snaps[i]) for i in range(4)])  # two more since the checkpoint
    # The store restarted and already holds one new snapshot: it is not empty, yet it
    # lost history, so it is refilled (the incarnation changed).
    store.index_value = ("inc-2", 1, [(0, Ref(snapshot(9), ready=True))], True)
    svc.sample(1)
    (refill,) = store.sent("refill")
    assert [i for i, _ in refill[0]["items"]] == [0, 1, 2, 3], "the cache (newer) was used"
    assert refill[0]["next_id"] == 4
    assert svc.store_recoveries == 1


def test_restarted_store_is_refilled_from_the_checkpoint_when_it_is_newer():
    store = FakeStore()
    svc = service(store)
    snaps = {i: snapshot(i) for i in range(3)}
    _follow(svc, store, [(0, snaps[0])])
    svc.last_saved = {"items": [(i, snaps[i]) for i in range(3)], "next_id": 3, "version": 3}
    store.index_value = ("inc-2", 0, [], True)
    svc.sample(1)
    (refill,) = store.sent("refill")
    assert [i for i, _ in refill[0]["items"]] == [0, 1, 2]


def test_other_ranks_keep_their_cache_until_rank_0_has_refilled():
    store = FakeStore()
    svc = service(store, rank=1)
    _follow(svc, store, [(0, snapshot(0)), (1, snapshot(1))])
    store.index_value = ("inc-2", 0, [], True)  # restarted, awaiting refill
    svc.sample(1)
    assert sorted(svc.cache.modules) == [0, 1]
    assert store.sent("refill") == []
    _follow(svc, store, [(0, snapshot(0)), (1, snapshot(1)), (2, snapshot(2))], "inc-2", 3)
    assert sorted(svc.cache.modules) == [0, 1, 2]


def test_checkpoint_uses_what_the_worker_knows_when_the_store_is_incomplete(monkeypatch):
    store = FakeStore()
    svc = service(store)
    _follow(svc, store, [(0, snapshot(0)), (1, snapshot(1))])
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: (False, {"items": []}))
    state = svc.state()
    assert [i for i, _ in state["items"]] == [0, 1]
    assert svc.needs_refill


def plain_store_actor(capacity=4, awaiting=False):
    actor = ReplayStoreActor.__new__(ReplayStoreActor)
    actor.incarnation, actor.awaiting_refill = "x", awaiting
    actor.store = ReplayStore(capacity)
    return actor


def test_refill_after_restart_puts_history_first_and_renumbers_what_came_since():
    actor = plain_store_actor(capacity=4, awaiting=True)
    actor.add("new-a")  # arrived after the restart: ids began again at 0
    history = {"items": [(5, "h5"), (6, "h6"), (7, "h7")], "next_id": 8, "version": 9}
    assert actor.refill(history) == 4
    assert actor.store.entries() == [(5, "h5"), (6, "h6"), (7, "h7"), (8, "new-a")]
    assert actor.add("next") == 9 and not actor.awaiting_refill


def test_refill_of_a_live_store_merges_by_id_without_duplicates():
    actor = plain_store_actor(capacity=10)
    for value in ("a", "b", "c"):
        actor.add(value)
    actor.refill({"items": [(0, "a"), (1, "b")], "next_id": 2, "version": 2})
    assert actor.store.entries() == [(0, "a"), (1, "b"), (2, "c")]


@pytest.mark.parametrize("kind", ["no request", "timeout"])
def test_stop_flag_polling_never_waits(monkeypatch, kind):
    from trainers.ray_env import RayTrainEnv

    env = RayTrainEnv.__new__(RayTrainEnv)
    env.stop_query = None
    flag = FakeStore()
    env.stop_flag = flag
    waits = []
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: waits.append(timeout) or ([], refs))
    assert env.stop_requested() is False  # sends the question
    if kind == "timeout":
        env.stop_query = (env.stop_query[0], -1e9)
    assert env.stop_requested() is False  # the answer has not arrived: no waiting
    assert waits == [0]
    assert (env.stop_query is None) == (kind == "timeout")


def test_restarts_never_queue_and_the_service_reports_both_sides(monkeypatch):
    from orchestrator.generator_client import RayGeneratorService, RestartClient

    monkeypatch.setattr(ray, "put", lambda value: value)
    trainer, clock = FakeStore(), Clock()
    svc = RayGeneratorService(
        RestartClient(trainer, seed=0, calls=Calls, clock=clock), service(FakeStore())
    )
    classifier = torch.nn.Linear(2, 2)
    svc.request_restart(classifier, step=0)
    svc.request_restart(classifier, step=1)  # one is running: skipped, not queued
    assert [args[1] for args in trainer.sent("train")] == [1000]
    assert svc.poll_restart() == 0 and svc.poll_restart() is None
    svc.restarts_adopted += 1  # what another rank does when rank 0 adopted one
    assert (svc.restarts_requested, svc.restarts_adopted) == (1, 2)
    assert svc.stats() == {
        "restarts_requested": 1.0,
        "restarts_skipped": 1.0,
        "restart_failures": 0.0,
        "steps_while_restarting": 0.0,
        "longest_restart_poll_s": pytest.approx(0.0, abs=0.1),
        "longest_replay_s": 0.0,
        "store_recoveries": 0.0,
        "replay_refresh_failures": 0.0,
    }
