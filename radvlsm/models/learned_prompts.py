"""Learnable prompts (the prompt surveys' third kind): sparse tokens fed straight to the SAM decoder.

Each of the ``L`` prompts is ``T`` tokens in the prompt encoder's token space, decoded like a box or a click but
with no box or click at all: the decoder's attention over the image embedding has to find the lesion. They start
as the box tokens of central boxes of different sizes (so they start as box prompts the decoder knows) and are
trained with the decoder frozen, best-of-``L`` (multiple-choice) so that different prompts specialise.
"""

from __future__ import annotations

import torch
from torch import nn

from radvlsm.errors import RadVLSMInputError


class LearnedPrompts(nn.Module):
    """``L`` learnable sparse prompts of ``T = 2`` tokens (a box's two corner tokens) each.

    Args:
        n_prompts: number of learned prompts ``L``.
        dim: token size ``C`` (the decoder's embedding size).
    """

    n_tokens = 2

    def __init__(self, n_prompts: int, dim: int) -> None:
        super().__init__()
        if n_prompts < 1 or dim < 1:
            raise RadVLSMInputError(f"need n_prompts and dim >= 1, got {n_prompts} and {dim}", "LearnedPrompts")
        self.tokens = nn.Parameter(torch.zeros(n_prompts, self.n_tokens, dim))

    @torch.no_grad()
    def init_from_boxes(self, prompt_encoder: nn.Module, image_size: int) -> LearnedPrompts:
        """Start each prompt at the box tokens of a centred box, from a third to three quarters of the frame.

        Args:
            prompt_encoder: segment_anything's ``PromptEncoder`` (frozen).
            image_size: side ``S`` of the prompt frame.
        """
        n = self.tokens.shape[0]
        fractions = torch.linspace(0.33, 0.75, n) if n > 1 else torch.tensor([0.5])
        half = fractions[:, None] * image_size / 2
        centre = image_size / 2
        boxes = torch.cat([centre - half, centre - half, centre + half, centre + half], dim=1)
        device = next(prompt_encoder.parameters()).device
        sparse, _ = prompt_encoder(points=None, boxes=boxes.to(device), masks=None)
        self.tokens.copy_(sparse.to(self.tokens))
        return self

    def forward(self) -> torch.Tensor:
        """``(L, T, C)`` prompt tokens."""
        return self.tokens
