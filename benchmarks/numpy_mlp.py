"""A plain, vectorized NumPy MLP: the baseline digitcore's training speed is compared to.

Written the way a careful NumPy user would: float32 throughout, one matmul per product,
in-place updates, the batch converted from uint8 only when used.
"""

import numpy as np


class NumpyMLP:
    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.W = [(rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(np.float32)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, np.float32) for o in sizes[1:]]

    def forward(self, x):
        hs = [x]
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            h = h @ w.T
            h += b
            if i + 1 < len(self.W):
                np.maximum(h, 0, out=h)
            hs.append(h)
        return hs

    def train_epoch(self, x_u8, y, batch_size, lr, rng):
        n = len(x_u8)
        order = rng.permutation(n)
        loss_sum = 0.0
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            xb = x_u8[idx].astype(np.float32)
            xb *= np.float32(1 / 255)
            yb = y[idx]
            hs = self.forward(xb)
            z = hs[-1]
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            m = len(idx)
            loss_sum -= np.log(z[np.arange(m), yb] + 1e-12).sum()
            z[np.arange(m), yb] -= 1
            z *= np.float32(1 / m)
            d = z
            for i in reversed(range(len(self.W))):
                gw = d.T @ hs[i]
                gb = d.sum(axis=0)
                if i > 0:
                    d = d @ self.W[i]
                    d *= hs[i] > 0
                self.W[i] -= np.float32(lr) * gw
                self.b[i] -= np.float32(lr) * gb
        return loss_sum / n

    def score(self, x_u8, y):
        return float((self.forward(x_u8.astype(np.float32) / 255)[-1].argmax(1) == y).mean())
