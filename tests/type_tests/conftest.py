"""The files here are only type-checked (by ``tests/test_type_checkers.py``), never run."""

collect_ignore_glob = ["*.py"]
