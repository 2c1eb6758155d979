"""Load backbone weights from a run folder, a safetensors file or a PyTorch state dict."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from tripletlab.runs import load_tensors, read_checkpoint

log = logging.getLogger(__name__)


def check_backbone_weights(path: str | Path) -> Path:
    """Refuse, without reading it, a backbone weights path that is not there or not of a kind
    `read_backbone_state` reads (before a run reads any data). Returns it as a `Path`.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: a file of an unknown kind.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    if not path.is_dir() and path.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise ValueError(f"{path}: expected a run folder, .safetensors, .pt, .pth or .bin")
    return path


def read_backbone_state(path: Path) -> dict[str, Tensor]:
    """The backbone tensors stored at `path`.

    A tripletlab run or checkpoint folder contributes its `backbone.*` weights (the prefix is
    removed); a `.safetensors` file or a PyTorch file (`.pt`, `.pth`, `.bin`, loaded with
    `weights_only=True`, never a full unpickle) contributes its tensors, with a leading
    `backbone.` removed if every key has it.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: a file that holds no tensors or is of an unknown kind.
    """
    path = check_backbone_weights(path)
    if path.is_dir():
        state, _ = read_checkpoint(path)
    elif path.suffix == ".safetensors":
        state = load_tensors(path)
    else:  # .pt, .pth, .bin
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several kinds for a refused or broken file
            raise ValueError(f"{path}: not a plain PyTorch state dict ({error})") from error
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no mapping of names to tensors")
    if any(key.startswith("backbone.") for key in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def load_backbone_weights(backbone: nn.Module, path: Path, strict: bool = False) -> dict[str, list]:
    """Copy weights from `path` into `backbone`, reporting what did not fit.

    Returns:
        Dict with `missing` (backbone keys not in the file), `unexpected` (file keys the
        backbone lacks) and `mismatched` (same key, other shape; left untouched).
    Raises:
        ValueError: with `strict`, any missing, unexpected or mismatched key; always when
            nothing at all could be loaded.
    """
    state = read_backbone_state(path)
    upgrade = getattr(backbone, "upgrade_state_dict", None)  # older checkpoints' key names
    if upgrade is not None:
        state = upgrade(state)
    own = backbone.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    result = backbone.load_state_dict(usable, strict=False)
    report = {
        "missing": sorted(set(result.missing_keys) | set(mismatched)),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": sorted(mismatched),
    }
    if not usable:
        raise ValueError(f"{path}: no weight matches the backbone (keys like {sorted(own)[:3]})")
    problems = {k: v for k, v in report.items() if v}
    if problems:
        message = "; ".join(f"{k}: {', '.join(v[:5])}{' ...' if len(v) > 5 else ''}"
                            for k, v in problems.items())  # fmt: skip
        if strict:
            raise ValueError(f"{path}: backbone weights do not fit ({message})")
        log.warning("%s: loaded %d tensors; %s", path, len(usable), message)
    return report
