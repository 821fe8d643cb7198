"""The record store, torch-free: value keys, the record and its schema, run folders, merge, compare."""
