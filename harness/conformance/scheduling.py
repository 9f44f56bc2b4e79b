"""How pytest-xdist hands the checks to the worker processes: a torch.compile'd implementation's
checks all to one worker, every other check one at a time, longest first; with no compiled
implementation, by work stealing (each worker a contiguous half of the checks, longest first, an
idle one taking half of what the other has left): xdist's load scheduling costs its controller
about 2 ms a check, against 0.7 ms (9,000 trivial checks on two workers of a 2-vCPU EPYC: 31 s
against 16 s), time the workers lose on a machine with as many cores as workers.

Each worker process compiles every graph variant it meets anew (dynamo and inductor's caches are
per process; inductor's on-disk cache is cold on a fresh machine and fills too late for a second
worker compiling the same variants at the same moment). Spread over two workers, compiled-gru's
quick verdict took 97 s of checks against 57 s on one worker (2-vCPU EPYC, inductor's cache
cold), while the other implementations' checks keep the second worker busy. pytest-xdist's own
``--dist loadgroup`` would do it from ``xdist_group`` markers, but it renames the node ids, which
pytest 9 no longer reads; this scheduler groups by the implementation a node id names instead.
It applies to the default distribution (``-n N`` alone); any other ``--dist`` is xdist's.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadGroupScheduling, WorkStealingScheduling


class CompiledTogether(LoadGroupScheduling):
    """pytest-xdist's load-group scheduling, whose groups are the checks of each compiled
    implementation (one unit of work, to one worker); every other check is a unit of its own,
    handed out in the collection's order (harness.conformance.collection.longest_first), the
    groups first (they hold the most checks)."""

    def __init__(self, config: pytest.Config, log, compiled: frozenset[str]) -> None:
        super().__init__(config, log)
        self.compiled = compiled

    def remove_node(self, node) -> str | None:
        """As load-group scheduling when a worker ends or dies, with two differences when it
        dies. The check that was running is not handed out again (as ``--dist load`` does):
        it is recorded as crashed, and a check that crashes every time would crash worker
        after worker without end. And only the units with checks left go back to the queue:
        xdist's requeues the dead worker's finished units too, and a worker handed one gets
        nothing to run and never asks for more (the run hangs)."""
        workload = self.assigned_work.get(node, {})
        running = next((nodeid for unit in workload.values()
                        for nodeid, completed in unit.items() if not completed), None)
        if running is not None:
            for unit in workload.values():
                if running in unit:
                    unit[running] = True  # done: its crash record is its result
        for scope in [scope for scope, unit in workload.items() if all(unit.values())]:
            del workload[scope]
        super().remove_node(node)  # what is left back in the queue
        return running  # None at a worker's normal end: nothing was pending

    def _reschedule(self, node) -> None:
        """As load-group scheduling, but not to a worker whose collection is not in yet: a
        replacement for a dead worker is a node before it has collected, and another worker
        finishing its collection reschedules every node (xdist's then fails looking up the
        newcomer's collection: KeyError, the run ends with an internal error). It gets its work
        when its own collection finishes."""
        if node in self.registered_collections:
            super()._reschedule(node)

    def _split_scope(self, nodeid: str) -> str:
        from harness.conformance.recording import impl_of_nodeid

        impl = impl_of_nodeid(nodeid)
        return f"compiled {impl}" if impl in self.compiled else nodeid


class UntilCollected:
    """The scheduler of the xdist controller of a run with a results directory, which does not
    know the compiled implementations until its workers hand them off (harness.conformance.
    handoff): xdist's work stealing follows the workers as they come, and at the first
    collection hands them to CompiledTogether if any implementation is compiled."""

    def __init__(self, config: pytest.Config, log) -> None:
        self.config, self.log = config, log
        self.scheduler = WorkStealingScheduling(config, log)
        self.decided = False

    def add_node_collection(self, node, collection) -> None:
        if not self.decided:
            from harness.conformance.handoff import read_handoff

            self.decided = True
            handoff = read_handoff(self.config.getoption("results_dir"))
            compiled = frozenset(name for name, entry in getattr(handoff, "entries", {}).items()
                                 if entry.compiled)
            if compiled:
                together = CompiledTogether(self.config, self.log, compiled)
                for known in self.scheduler.nodes:  # none has collected yet: nothing pending
                    together.add_node(known)
                self.scheduler = together
        self.scheduler.add_node_collection(node, collection)

    def __getattr__(self, name: str):  # everything else: the scheduler in charge
        return getattr(self.scheduler, name)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist") != "load":
        return None
    from harness.conformance.handoff import hands_off
    from harness.conformance.plugin import selection

    if hands_off(config):  # the compiled implementations are known once the workers collect
        return UntilCollected(config, log)
    compiled = frozenset(s.name for s in selection(config).specs
                         if getattr(s.capabilities, "compiled", False))  # ops: no such claim
    return (CompiledTogether(config, log, compiled) if compiled
            else WorkStealingScheduling(config, log))
