"""Building a model on the meta device (the size check of an exported folder) skips the random
initialisers, whose meta kernels import torch._dynamo: ~2 s of every cold ``--model`` start."""

from __future__ import annotations

import subprocess
import sys


def test_meta_build_gives_shapes_without_importing_dynamo():
    code = (
        "import sys, torch\n"
        "from musicfw.engine.pretrained import _skip_meta_init\n"
        "with torch.device('meta'), _skip_meta_init():\n"
        "    m = torch.nn.Sequential(torch.nn.Embedding(100, 32), torch.nn.LSTM(32, 64, 2), torch.nn.Linear(64, 10))\n"
        "shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}\n"
        "assert all(v.is_meta for v in m.state_dict().values())\n"
        "assert shapes['0.weight'] == (100, 32) and shapes['1.weight_hh_l1'] == (256, 64), shapes\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no dynamo"


def test_initialisers_still_run_off_the_meta_device():
    import torch

    from musicfw.engine.pretrained import _skip_meta_init

    torch.manual_seed(0)
    with _skip_meta_init():
        layer = torch.nn.Linear(4, 3)
    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 3)
    assert torch.equal(layer.weight, plain.weight) and layer.weight.abs().sum() > 0
