"""The supervisor that replaces PM2, in small modules:

- ``supervisor``: the main loop (Redis first, N nodes, restarts, rolling restart, scale, stop)
- ``spawn``: ``spawn_node``, how every ``sioplay node run`` child starts (supervisor, benches, tests)
- ``process``: one node child, its output pumped to a log, its /healthz polled
- ``policy``: when to restart a crashed node (back-off, give up)
- ``control``: CLI requests to a running supervisor, as files
- ``launcher``: the CLI's side (the start-up check, start detached or attached, stop)
- ``preflight``: refusals before a start, clean-up after a dead supervisor
- ``logs``, ``status``: log files and the merged view; the status table
- ``health_view``: a node's readiness and the embedded Redis's supervision in the words of the status table
- ``redis_server``: the embedded redis-server
- ``redis_supervision``: the embedded Redis restarted with back-off, or left errored
- ``dev_ca``: ``--tls dev``'s local CA and certificate for localhost, made once in the state directory

The state file, pids, ports, URLs, units and the health judgement are in ``sioplay.common``,
which the client commands import too.
"""
