"""The wheels: locks (`make lock`), the host's wheel cache (`make fetch`) and its loopback index, network settings."""
