"""`FastDropout`: dropout with cheap random masks, fused with the ReLU before it on request.

PyTorch's CPU dropout draws one random number per element from a serial generator and took
27% of a batch-32 training step of the tutorial network; `tripletlab.models._dropout` makes
the masks with a counter-based hash in one compiled pass instead. Inside
`tripletlab.models.batch_part.batch_part` the (N, ...) tensors dropped on the CPU are rows of
a larger batch and get the masks those rows have there: a rank of a distributed run drops
what one process on the global batch would.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.models.batch_part import rows_before


class FastDropout(nn.Module):
    """Dropout with cheap random masks; drop probability rounded to a multiple of 1/65536.

    On the CPU (float32) masks come from a counter-based hash (`tripletlab.models._dropout`),
    applied in the same pass as the scaling (and the ReLU before it, with `after_relu`);
    elsewhere (GPU, other dtypes) four 16-bit uniforms are cut from each 64-bit draw of
    PyTorch's generator. Outputs are scaled by 1 / (1 - p) in training and unchanged in eval
    mode, like `nn.Dropout`. See `batch_part` for the masks of a part of a batch (CPU).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return self._drop(x, relu=False)

    def after_relu(self, x: Tensor) -> Tensor:
        """self(relu(x)) in one pass where it can: the ReLU and this dropout fused."""
        return self._drop(x, relu=True)

    def _drop(self, x: Tensor, relu: bool) -> Tensor:
        if not self.training or self.p == 0.0:
            return torch.relu(x) if relu else x
        from tripletlab.models._dropout import dropout_threshold, fast_dropout  # numba: lazily

        if x.device.type == "cpu" and x.dtype == torch.float32:
            rows = rows_before()
            offset = rows * x[0].numel() if rows and x.ndim and len(x) else 0
            return fast_dropout(x, self.p, relu=relu, offset=offset)
        x = torch.relu(x) if relu else x
        count = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64,
                              device=x.device)  # fmt: skip
        threshold = dropout_threshold(self.p) - 32768  # keep where the int16 draw >= this
        keep = draws.view(torch.int16)[:count].view(x.shape) >= threshold
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
