"""Analyses shared by passes, the CLI and the app (no UI imports; numpy only where needed)."""
