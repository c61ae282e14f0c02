"""A tiny app with one real dependency, packed by the artifact tests."""
