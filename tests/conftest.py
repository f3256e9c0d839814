"""Fast-suite settings: one torch thread (the tests use tiny tensors; two cores are shared with
subprocesses the tests start), and the tests folder importable for shared helpers."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)

# One feature / extractor cache for every protocol run of the session (runs in-process and in subprocesses):
# the domain classifier of the digits is trained once, not once per test folder.  Cache keys are content
# hashes, so sharing changes no value.
_OWN_CACHE = None
if not os.environ.get("AVADE_CACHE"):
    import tempfile
    _OWN_CACHE = os.environ["AVADE_CACHE"] = tempfile.mkdtemp(prefix="avade-test-cache-")


def pytest_unconfigure(config):
    """Remove the session's cache folder (only one this conftest made): runs otherwise leave one behind each."""
    if _OWN_CACHE is not None:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
