"""`make matrix`: plan.py decides which tags can be built here and which of their steps are current; run.py does the
rest (lock check, build, size, smoke per tag, in matrix order), prints its progress, and writes the report."""
