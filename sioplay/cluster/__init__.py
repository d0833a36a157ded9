"""The supervisor that replaces PM2, in small modules:

- ``supervisor``: the main loop (Redis first, N nodes, restarts, rolling restart, scale, stop)
- ``process``: one node child, its output pumped to a log, its /healthz polled
- ``policy``: when to restart a crashed node (back-off, give up)
- ``state``: the state file other commands read (``read_state``, ``is_running``)
- ``control``: CLI requests to a running supervisor, as files
- ``launcher``: the CLI's side (start detached, stop)
- ``preflight``: refusals before a start, clean-up after a dead supervisor
- ``logs``, ``status``: log files and the merged view; the status table
- ``pids``, ``ports``, ``urls``, ``units``, ``redis_server``: helpers
"""
