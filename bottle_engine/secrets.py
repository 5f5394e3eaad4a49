"""Real secret values: read on the host at launch, handed to the bundle only.

Values are written with mode 0600 into the bottle's state dir, which is mounted into the bundle
container and never into the agent's. The agent only ever holds placeholders (see plan.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from bottle_engine.bottle_dir import BottleDir
from bottle_engine.errors import BottleError
from bottle_engine.plan import BottlePlan


def read_secret_value(plan: BottlePlan, name: str) -> str:
    secret = next(s for s in plan.secrets if s.name == name)
    where = f"bottles.{plan.bottle}.secrets.{name}"
    if secret.from_env is not None:
        value = os.environ.get(secret.from_env)
        if not value:
            raise BottleError(
                f"{where}: the environment variable {secret.from_env} is not set",
                fix=f"export {secret.from_env}=... before launching, or use from_file",
            )
        return value
    assert secret.from_file is not None
    try:
        return secret.from_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BottleError(
            f"{where}: cannot read {secret.from_file}: {exc.strerror or exc}",
            fix="create the file, or fix from_file in bottle.toml",
        ) from exc


def write_bundle_secrets(
    plan: BottlePlan, bottle_dir: BottleDir
) -> tuple[dict[str, Path], Path | None]:
    """Write each secret value and git key for the bundle; (secret files, git key dir)."""
    files: dict[str, Path] = {}
    bottle_dir.private_subdir(bottle_dir.secrets_dir)
    for secret in plan.secrets:
        files[secret.name] = bottle_dir.write_private(
            bottle_dir.secret_file(secret.name), read_secret_value(plan, secret.name)
        )
    if not plan.git:
        return files, None
    bottle_dir.private_subdir(bottle_dir.git_keys_dir)
    for upstream in plan.git:
        if upstream.identity is not None:
            try:
                key = upstream.identity.read_bytes()
            except OSError as exc:
                raise BottleError(
                    f"bottles.{plan.bottle}.git ({upstream.name}).identity: cannot read "
                    f"{upstream.identity}: {exc.strerror or exc}",
                    fix="create the key or fix the path in bottle.toml",
                ) from exc
            bottle_dir.write_private(bottle_dir.git_identity(upstream.name), key)
        if upstream.known_host_key:
            bottle_dir.write_private(
                bottle_dir.git_known_hosts(upstream.name), upstream.known_host_key + "\n"
            )
    return files, bottle_dir.git_keys_dir


def copy_upstream_ca(plan: BottlePlan, bottle_dir: BottleDir) -> Path | None:
    """The bottle's `[egress] upstream_ca`, checked and copied into its state dir for the bundle
    (mounted read-only; the copy, not the user's file, is handed to the bundle's user)."""
    if plan.upstream_ca is None:
        return None
    import ssl

    key = f"bottles.{plan.bottle}.egress.upstream_ca"
    try:
        text = plan.upstream_ca.read_text()
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError("no certificate in it")
        ssl.create_default_context(cadata=text)
    except (OSError, UnicodeDecodeError) as exc:
        raise BottleError(
            f"{key}: cannot read {plan.upstream_ca}: {getattr(exc, 'strerror', None) or exc}",
            fix="fix the path in bottle.toml (relative to the manifest)",
        ) from exc
    except (ssl.SSLError, ValueError) as exc:
        raise BottleError(
            f"{key}: {plan.upstream_ca} holds no PEM CA certificate the proxy can load ({exc})",
            fix="point it at a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)",
        ) from exc
    return bottle_dir.write_private(bottle_dir.upstream_ca, text)
