#!/usr/bin/env python
"""What each fast path buys on a real MLP epoch (issue 13's rule: under ~3% and it goes).

    python benchmarks/fastpaths.py                 # 5 pairs per trick
    python benchmarks/fastpaths.py --pairs 7 --threads 2

The epoch: 784-200-100-10 ReLU MLP (``python -m tinynn train``'s), Adam 1e-3, batch 128, one
shuffled pass over 60,000 synthetic float32 samples. For each trick, fast and textbook epochs
alternate in this one process (the order flips every pair, so drifts in machine load hit both
alike); the report gives medians and the median of the per-pair ratios.
"""
import argparse
import statistics
import time

import numpy as np

import tinynn as tn
import tinynn.model
from tinynn.models import build_mlp


def _epoch(x, y):
    tn.seed(0)
    model = tn.Model(build_mlp(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    model.predict(x[:1])
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=128, seed=0)
    return time.perf_counter() - start


def _adam(fast):
    tn.Adam.fast = fast


_call_backward = tinynn.model.call_backward


def _input_grad_skip(fast):
    tinynn.model.call_backward = (_call_backward if fast else
                                  lambda backward, grad, input_grad: backward(grad))


_dense_backward = tn.Dense.backward


def _dense_backward_out(self, grad, input_grad=True):
    """A candidate fast path: gradients written in place into the existing arrays (out=)."""
    (x,) = self.saved_tensors
    np.matmul(x.T, grad, out=self.grads["w"])
    if self.bias:
        np.sum(grad, axis=0, out=self.grads["b"])
    return grad @ self.params["w"].T if input_grad else None


def _dense_out(fast):
    tn.Dense.backward = _dense_backward_out if fast else _dense_backward


TRICKS = {"Adam in-place update (Adam.fast)": _adam,
          "first layer skips dL/d(data) (input_grad=False)": _input_grad_skip,
          "Dense.backward into existing arrays (out=), not kept": _dense_out}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    x, y = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        _epoch(x[:5000], y[:5000])  # warm-up
        for name, switch in TRICKS.items():
            times = {True: [], False: []}
            for pair in range(args.pairs):
                for fast in ((True, False) if pair % 2 == 0 else (False, True)):
                    switch(fast)
                    times[fast].append(_epoch(x, y))
                switch(True)
            fast_s, slow_s = statistics.median(times[True]), statistics.median(times[False])
            ratio = statistics.median(s / f for f, s in zip(times[True], times[False]))
            print(f"{name}: fast {fast_s:.3f} s, textbook {slow_s:.3f} s per epoch; saves "
                  f"{100 * (1 - 1 / ratio):.1f}% of an epoch (median of {args.pairs} pairs)",
                  flush=True)


if __name__ == "__main__":
    main()
