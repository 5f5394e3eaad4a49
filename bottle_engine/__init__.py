"""bot-bottle engine: build, launch and police sandboxed coding agents ("bottles")."""

__version__ = "0.1.0"
