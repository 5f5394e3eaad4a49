"""`bottle-lsp`: the language server for bottle.toml (diagnostics, completion, hover,
navigation, quick fixes, code lenses and the bottle commands the VS Code extension calls)."""

from bottle_engine import __version__

__all__ = ["__version__"]
