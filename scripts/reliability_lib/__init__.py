"""Helpers of the reliability suites 3 (`make faults`) and 4 (`make load`).

* `sandbox`  - a device home with a fake Steam root, the standalone Agent as a real process, the
  machine's description;
* `proxy`    - a TCP relay between Hub and Agent that cuts the connection (or calls back, e.g. to
  SIGKILL the Agent or fill its disk) after a chosen number of bytes;
* `games`    - versioned test games, tree digests, shortcuts.vdf checks;
* `agent_with_ticker` - runs the standalone Agent with a 10 ms ticker on its own event loop and
  writes the loop-lag samples and percentiles to a file when it exits;
* `peers`    - idle sockets and competing hubs (run in-process by the sample test, as a separate
  process by `make load`);
* `faults_suite`, `load_suite` - the suites themselves, shared by the scripts and the sample tests.

Nothing here changes product code: the Agent is the real `capydeploy.agent.cli`, the Hub the real
`capydeploy.hub` library.
"""
