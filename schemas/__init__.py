"""Checked-in schemas, one folder per data set family (used through ImportSchemaGen)."""
import os


def schema_path(name: str) -> str:
    path = os.path.join(os.path.dirname(__file__), name, "schema.pbtxt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checked-in schema for {name!r} at {path}")
    return path
