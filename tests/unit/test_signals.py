"""`ray job stop` sends the driver SIGTERM: the first one, like the first Ctrl-C, asks the
run to stop at a step boundary with a checkpoint; a second one ends the process."""

import os
import signal

import pytest

from orchestrator.signals import stop_on_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_requests_a_clean_stop_and_the_handlers_come_back(sig):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    requests = []
    with stop_on_signals(lambda: requests.append(True)):
        os.kill(os.getpid(), sig)
        assert requests == [True]
        # The second signal is no longer caught for a clean stop.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert {s: signal.getsignal(s) for s in before} == before
