"""The learned visual prompt tokens, as a small module of their own (after CoOp's PromptLearner).

Category mode learns one prompt per modality (sketch, photo) on a shared backbone; fine-grained
mode learns a single prompt shared by both, so sketches and photos meet in one space.
"""

from __future__ import annotations

import torch
from torch import nn

from sketchlvm.config import MODALITIES, PROMPT_SETS


class VisualPrompts(nn.Module):
    """K learnable tokens of the tower's width per prompt set.

    The width is read from the model by the caller, never a literal 768.
    """

    def __init__(self, mode: str, n_prompts: int, width: int, init_std: float = 1.0):
        super().__init__()
        if mode not in PROMPT_SETS:
            raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(PROMPT_SETS)}")
        if n_prompts < 1:
            raise ValueError(f"n_prompts must be >= 1, got {n_prompts}")
        self.mode = mode
        self.n_prompts = n_prompts
        self.routes = PROMPT_SETS[mode]
        self.tokens = nn.ParameterDict(
            {
                name: nn.Parameter(torch.randn(n_prompts, width) * init_std)  # (K, width)
                for name in sorted(set(self.routes.values()))
            }
        )

    def forward(self, modality: str, batch_size: int) -> torch.Tensor:
        """Return the prompt tokens for one modality, expanded to (batch, K, width)."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
        tokens = self.tokens[self.routes[modality]]  # (K, width)
        return tokens.unsqueeze(0).expand(batch_size, -1, -1)
