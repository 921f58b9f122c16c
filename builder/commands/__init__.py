"""The commands of `python -m builder`, one function each (cmd_<name>), grouped by what they act on; builder/cli.py
holds their table and the exit status."""
