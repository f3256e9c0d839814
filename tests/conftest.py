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
if not os.environ.get("AVADE_CACHE"):
    import tempfile
    os.environ["AVADE_CACHE"] = tempfile.mkdtemp(prefix="avade-test-cache-")
