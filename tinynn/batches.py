"""Mini-batches: one epoch is one pass over the data in shuffled slices of ``batch_size``."""
import numpy as np

from .checks import check_int
from .errors import ShapeError
from .random import rng


class BatchIterator:
    """Iterate over ``(x_batch, y_batch)`` pairs; iterate again for the next epoch.

    shuffle: a fresh random order every epoch (from ``seed`` if given, else tinynn's generator).
    drop_last: skip the final, smaller batch (useful when a layer wants equal batch sizes).
    """

    def __init__(self, x, y, batch_size=32, shuffle=True, seed=None, drop_last=False):
        batch_size = check_int(batch_size, "batch_size", "BatchIterator")
        if len(x) != len(y):
            raise ShapeError(f"BatchIterator: x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self):
        n, size = len(self.x), self.batch_size
        return n // size if self.drop_last else -(-n // size)

    def __iter__(self):
        n = len(self.x)
        order = (self.rng or rng()).permutation(n) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                yield self.x[idx], self.y[idx]
