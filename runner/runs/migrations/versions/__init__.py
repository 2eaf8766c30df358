"""The history tables' revisions."""
