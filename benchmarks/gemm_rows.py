"""How fast is one linear layer as a function of its number of rows (tokens)?

Cached action-only decoding runs 48 tokens per step, the uncached path 169 and the joint path 289. This
measures the GFLOP/s of the bench preset's linear shapes at those row counts, which bounds how much of the
FLOP saving of the cache turns into wall-clock saving on a given CPU and BLAS.

    python benchmarks/gemm_rows.py [--threads 1]
"""

import argparse
import time

import torch
import torch.nn.functional as F


def gflops(rows: int, inputs: int, outputs: int, layers: int = 12, repeats: int = 5) -> float:
    # Several distinct weights, so the measurement streams weights like a real model instead of
    # reusing one matrix from cache.
    weights = [torch.randn(outputs, inputs) for _ in range(layers)]
    bias = torch.randn(outputs)
    x = torch.randn(1, rows, inputs)

    def run():
        for w in weights:
            F.linear(x, w, bias)

    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    seconds = (time.perf_counter() - start) / repeats
    return 2 * rows * inputs * outputs * layers / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    row_counts = (48, 121, 169, 289)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); GFLOP/s of F.linear, fp32")
    print("| in -> out | " + " | ".join(f"{m} rows" for m in row_counts) + " |")
    print("|---" * (len(row_counts) + 1) + "|")
    for inputs, outputs in ((768, 768), (768, 3072), (3072, 768)):
        cells = " | ".join(f"{gflops(m, inputs, outputs):.1f}" for m in row_counts)
        print(f"| {inputs} -> {outputs} | {cells} |")


if __name__ == "__main__":
    main()
