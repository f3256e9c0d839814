"""Fast-suite settings: one torch thread (the tests use tiny tensors; two cores are shared with
subprocesses the tests start), and the tests folder importable for shared helpers."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)
