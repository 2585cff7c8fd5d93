"""The same MLP in PyTorch eager mode: the other reference digitcore's speed is compared to.

Written the way the PyTorch tutorials do it: nn.Sequential of Linear + activation (+ Dropout),
CrossEntropyLoss, torch.optim, shuffled mini-batches indexed from tensors that share the
NumPy arrays' memory. uint8 batches are converted with .float().div_(255) when used; float32
inputs are used as they are; a batch as large as the data is full-batch gradient descent on
the data in place (no shuffled copy). Importing this module needs torch.
"""

import time

import numpy as np
import torch


class TorchMLP:
    def __init__(self, sizes, seed=0, activation="relu", dropout=0.0):
        torch.manual_seed(seed)
        act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[activation]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i + 2 < len(sizes):
                layers.append(act())
                if dropout:
                    layers.append(torch.nn.Dropout(dropout))
        self.model = torch.nn.Sequential(*layers)

    @staticmethod
    def _floats(t):
        return t.float().div_(255) if t.dtype == torch.uint8 else t

    def fit(self, x, y, batch_size, epochs, lr, optimizer="sgd", seed=0):
        """Train; returns the seconds taken (tensor views of x and y made outside the clock)."""
        model = self.model
        model.train()
        opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=lr))
        lossf = torch.nn.CrossEntropyLoss()
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(y)
        n = len(x)
        g = torch.Generator().manual_seed(seed)
        t = time.perf_counter()
        for _ in range(epochs):
            if batch_size >= n:
                batches = [(self._floats(xt), yt)]
            else:
                perm = torch.randperm(n, generator=g)
                batches = ((self._floats(xt[idx]), yt[idx])
                           for idx in (perm[s:s + batch_size] for s in range(0, n, batch_size)))
            for xb, yb in batches:
                opt.zero_grad(set_to_none=True)
                loss = lossf(model(xb), yb)
                loss.backward()
                opt.step()
        return time.perf_counter() - t

    def predict(self, x):
        """Classes: the argmax of the scores (no softmax, as digitcore's predict)."""
        self.model.eval()
        with torch.no_grad():
            return self.model(self._floats(torch.from_numpy(x))).argmax(1).numpy()

    def predict_proba(self, x):
        self.model.eval()
        with torch.no_grad():
            return torch.softmax(self.model(self._floats(torch.from_numpy(x))), 1).numpy()

    def score(self, x, y):
        return float((self.predict_proba(x).argmax(1) == np.asarray(y)).mean())
