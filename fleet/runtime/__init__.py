"""The heartbeat runtime: what a worker runs for ``fleet.heartbeat`` and ``fleet.bet`` tasks.

Read top to bottom:

- :mod:`~fleet.runtime.heartbeat`: a heartbeat (agent lock, idempotency, stopping) and a
  fanned-out bet, each running its list of steps;
- :mod:`~fleet.runtime.steps`: the steps in order (protocols, instructions, budget, board
  tasks, context, handler, tools preflight, batch runner), shared by both;
- :mod:`~fleet.runtime.run`: the state a run carries through its steps;
- :mod:`~fleet.runtime.batch` and :mod:`~fleet.runtime.fanout`: the two batch runners
  (bet threads in this process; one task per bet on any worker);
- :mod:`~fleet.runtime.bets`: one bet: the handler's decision committed, deferred or failed;
- :mod:`~fleet.runtime.records`: heartbeat and part records, the one owner of both collections;
- :mod:`~fleet.runtime.wake`, :mod:`~fleet.runtime.locks`, :mod:`~fleet.runtime.renewer`,
  :mod:`~fleet.runtime.handoff`: wake on arrival, the agent lock, lease renewal, pickup times;
- :mod:`~fleet.runtime.runtime`: the per-process connections and thread pools.
"""
