"""The git gate: the only way the agent's commits leave the bottle.

The agent clones from and pushes to ``git://<bundle_ip>:9418/<name>`` (``GIT_GATE_URL`` +
``/<name>``, one repository per ``[[bottles.X.git]]`` upstream). A push goes upstream only if
every ref passes the branch policy (`policy.decide`) and no pushed commit adds a secret
(`scan`); the upstream's identity file and pinned host key exist only in the bundle.
"""
