"""Analyses shared by passes, the CLI, the app and reports: layer sensitivity, device choice (no UI imports;
plain data in, plain data out; numpy only where needed)."""
