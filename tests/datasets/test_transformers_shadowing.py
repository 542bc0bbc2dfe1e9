"""Our top-level `datasets` package shadows HuggingFace `datasets`; transformers probes for that name on import.

Run in a fresh interpreter with the repository first on sys.path, as the scripts run.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
sys.path.insert(0, {root!r})
import datasets
assert datasets.__file__.startswith({root!r}), datasets.__file__
from utils.torchvision_compat import ensure_torchvision_importable
ensure_torchvision_importable()
import transformers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
model = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=1))
import torch
out = model(input_ids=torch.tensor([[0, 5, 1]]))
assert out.last_hidden_state.shape == (1, 3, 16)
import datasets.multiview, datasets.stores
print("ok", CLIPTokenizer.__name__)
"""


def test_transformers_clip_imports_next_to_our_datasets_package():
    done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT))], cwd="/", capture_output=True,
                          text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok CLIPTokenizer")
