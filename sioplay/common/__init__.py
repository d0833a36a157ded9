"""What the cluster side and the client side both need, so that neither imports the other's code:

- ``state``: the state file a supervisor writes and every command reads (its format, ``read_state``,
  ``is_running``, the phases and ``LIVE_PHASES``)
- ``health``: ``is_alive`` and ``is_healthy`` (ready), the one judgement of a node's /healthz answer
- ``pids``: processes known by pid and create time
- ``ports``: free ports, and who holds a taken one
- ``urls``: where a node or the cluster is reached from this machine
- ``units``: sizes, durations and counts as people write and read them
- ``redis_endpoint``: where a Redis URL points (parsed honestly), and one blocking command for checks
- ``cluster_secret``: the secret that signs the cluster's messages, made once per state directory
- ``secret_file``: a secret in a 0600 file, made once (the cluster secret, the embedded Redis's passwords)
- ``names``: the one rule for names people type (rooms, users, ids): NFC, no invisible or control characters
- ``exposure``: whether the nodes listen beyond loopback, and the warning that says what that exposes
- ``tls``: the certificate the nodes serve, and what the CLI's clients trust (``--ca``, pinned, the dev CA)

``sioplay.cluster`` (the supervisor and the CLI's side of it), ``sioplay.client`` (the client
commands) and ``sioplay.bench`` import these; nothing here imports them.
"""
