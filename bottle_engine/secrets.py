"""Real secret values: read on the host at launch, handed to the bundle only.

Values are written with mode 0600 into the bottle's state dir, which is mounted into the bundle
container and never into the agent's. The agent only ever holds placeholders (see plan.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


def write_bundle_secrets(plan: BottlePlan, bottle_dir: Path) -> tuple[dict[str, Path], Path | None]:
    """Write each secret value and git key for the bundle; (secret files, git key dir)."""
    secrets_dir = bottle_dir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, Path] = {}
    for secret in plan.secrets:
        path = secrets_dir / secret.name
        _write_private(path, read_secret_value(plan, secret.name).encode())
        files[secret.name] = path
    if not plan.git:
        return files, None
    git_dir = bottle_dir / "git-keys"
    git_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for upstream in plan.git:
        if upstream.identity is not None:
            try:
                shutil.copyfile(upstream.identity, git_dir / f"{upstream.name}.key")
            except OSError as exc:
                raise BottleError(
                    f"bottles.{plan.bottle}.git ({upstream.name}).identity: cannot read "
                    f"{upstream.identity}: {exc.strerror or exc}",
                    fix="create the key or fix the path in bottle.toml",
                ) from exc
            os.chmod(git_dir / f"{upstream.name}.key", 0o600)
        if upstream.known_host_key:
            _write_private(
                git_dir / f"{upstream.name}.known_hosts", (upstream.known_host_key + "\n").encode()
            )
    return files, git_dir


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
