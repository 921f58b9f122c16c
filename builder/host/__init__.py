"""This host: the smoke suite and the workspace in containers here, the GPUs they get, which tags run here."""
