"""The wheels: the locks (`make lock`), the host's wheel cache (`make fetch`), its loopback server for builds, the host's network settings."""
