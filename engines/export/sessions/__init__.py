"""Sessions on exported files, one module per format: ``open_file(path, model) -> Session``.

They open the file as a deployment would (no qbench artifact in memory), so validation tests the
file itself. Each session has ``info`` (the runtime's versions). Heavy: child or CLI process only.
"""
