"""Analyses of stored results shared by the CLI, the app and reports (plain data in, plain data out)."""
