"""Resolve the user's --device choice to a torch device, failing clearly when CUDA is asked for but absent."""

from __future__ import annotations

import torch

from handcli.errors import BadInput


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (BadInput when unavailable)."""
    choice = (choice or "auto").lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput(f"--device {choice}: CUDA is not available on this machine (use --device cpu)")
        return torch.device(choice)
    raise BadInput(f"--device {choice}: expected auto, cpu or cuda")
