"""Code that runs inside the bundle container: the bottle's only way out.

The engine writes a `BundleConfig` as JSON into the bottle's state dir and mounts it at
`CONFIG_PATH`; `python -m bottle_engine.bundle` (the supervisor) starts the enabled services.
"""
