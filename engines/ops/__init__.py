"""Operating exported variants: versioning with DVC, serving them over HTTP, monitoring what is served.

Light at import time (standard library only): the app imports the monitor from here; DVC and
uvicorn are imported inside the functions that need them.
"""
