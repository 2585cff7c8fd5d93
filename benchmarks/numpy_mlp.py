"""A plain, vectorized NumPy MLP: the baseline digitcore's training speed is compared to.

Written the way a careful NumPy user would: float32 throughout, one matmul per product,
in-place updates, the batch converted from uint8 only when used. Inputs are uint8 pixels
(scaled by 1/255 per batch) or float32 already scaled (used as they are); a batch as large
as the data is full-batch gradient descent on the data in place (no shuffled copy).
"""

import numpy as np


class NumpyMLP:
    def __init__(self, sizes, seed=0, activation="relu"):
        if activation not in ("relu", "sigmoid"):
            raise ValueError(f"activation must be relu or sigmoid, got {activation!r}")
        rng = np.random.default_rng(seed)
        self.activation = activation
        self.W = [(rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(np.float32)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, np.float32) for o in sizes[1:]]

    @staticmethod
    def _floats(x):
        if x.dtype == np.uint8:
            xf = x.astype(np.float32)
            xf *= np.float32(1 / 255)
            return xf
        return x

    def forward(self, x):
        hs = [x]
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            h = h @ w.T
            h += b
            if i + 1 < len(self.W):
                if self.activation == "relu":
                    np.maximum(h, 0, out=h)
                else:
                    np.negative(h, out=h)
                    np.exp(h, out=h)
                    h += 1
                    np.reciprocal(h, out=h)
            hs.append(h)
        return hs

    def predict(self, x):
        """Classes: the argmax of the scores (no softmax, as digitcore's predict)."""
        return self.forward(self._floats(x.reshape(len(x), -1)))[-1].argmax(1)

    def predict_proba(self, x):
        z = self.forward(self._floats(x.reshape(len(x), -1)))[-1]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def train_epoch(self, x, y, batch_size, lr, rng):
        n = len(x)
        full = batch_size >= n
        order = None if full else rng.permutation(n)
        loss_sum = 0.0
        for s in range(0, n, batch_size):
            if full:
                xb, yb = self._floats(x), y
            else:
                idx = order[s:s + batch_size]
                xb, yb = self._floats(x[idx]), y[idx]
            hs = self.forward(xb)
            z = hs[-1]
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            m = len(yb)
            loss_sum -= np.log(z[np.arange(m), yb] + 1e-12).sum()
            z[np.arange(m), yb] -= 1
            z *= np.float32(1 / m)
            d = z
            for i in reversed(range(len(self.W))):
                gw = d.T @ hs[i]
                gb = d.sum(axis=0)
                if i > 0:
                    d = d @ self.W[i]
                    if self.activation == "relu":
                        d *= hs[i] > 0
                    else:
                        d *= hs[i] * (1 - hs[i])
                self.W[i] -= np.float32(lr) * gw
                self.b[i] -= np.float32(lr) * gb
        return loss_sum / n

    def score(self, x, y):
        return float((self.forward(self._floats(x))[-1].argmax(1) == y).mean())
