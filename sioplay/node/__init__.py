"""One server node: python-socketio on aiohttp, its Redis connections, the bus between nodes, and its routes.

- ``app``: `Node`, the parts wired together, and its start and stop (`run_node`)
- ``room_events``: who may connect, and the room events of the original (connect, disconnect, identity-change)
- ``sockets``: this node's socket table (who each socket is, which room), with a version per room
- ``validation``: checks on what clients send (room names, id_user, connect parameters)
- ``manager``: python-socketio's client manager over the node's own Redis connections
- ``redis_wire``: raw Redis connections: one publisher, one `Subscription` carrying every channel
- ``bus``: node-to-node request/response over pub/sub, presence and heartbeats (`ClusterBus`)
- ``bus_message``: the bus's message format, validated on receipt
- ``membership``: which other nodes are alive, from their heartbeats
- ``roster_protocol``: the roster's request and reply kinds, their bodies and their checks
- ``cluster_roster``: this node's answers (`LocalAnswers`) and the cluster-wide query (`RosterService`)
- ``roster_parts``: each node's part of a room, kept sorted and serialized until the room changes
- ``roster_replicas``: the `replica` roster mode's copies of the other nodes' parts, and when one is current
- ``part_feed``: this node's part deltas on the bus (the `replica` mode), one per join or leave
- ``routes``: every HTTP route (users, rosters, health and metrics, the page)
- ``metrics``: the counters behind /healthz and /metrics
- ``readiness``: alive vs ready: Redis, the database and the bus checked, new clients refused while one is down
- ``connections``: every TCP connection before aiohttp sees it (a cap per address, a header deadline)
- ``listeners``: the listening sockets, plain or TLS, with a deadline for the TLS handshake
- ``origins``: which page origins may open a websocket, with the scheme the node really serves
- ``patches``: every reach into python-socketio, engine.io or aiohttp internals, checked and reported
- ``send_queue``: a socket's send queue that holds nothing while idle (installed by the ``send-queue`` patch)
"""
