"""`pytest smoke_tests` (on any host with torch and pytest): the same checks as `python -m smoke_tests`."""


def pytest_addoption(parser):
    parser.addoption("--require-gpu", action="store_true", help="a GPU check that would be skipped fails instead")
