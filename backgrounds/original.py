"""The original frames as the background: for recipes that only change colours and light."""

from __future__ import annotations

import numpy as np

from backgrounds.base import BackgroundRequest, BackgroundSource


class OriginalBackground(BackgroundSource):
    """Returns the episode's own frames, ``(T, H, W, 3)``: compositing then keeps the scene,
    and the recipe's photometric transforms do all the augmenting."""

    name = "original"

    def generate(self, model, request: BackgroundRequest) -> np.ndarray:
        return request.frames
