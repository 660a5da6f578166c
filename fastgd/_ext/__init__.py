"""Compiled kernels of fastgd (private: use the functions exported by ``fastgd``).

One module per kernel family, each built from ``src_c/<module>.pyx``:

- ``_build_info``: how the extension was built, and the OpenMP runtime it sees.
- ``_masked``: the masked residual, loss and gradients of W @ H.
- ``_memory``: arrays whose data start on a cache line.
- ``_pairwise``: pairwise squared Euclidean distances.
- ``_solvers``: factorize's compiled iteration loop for small problems.
- ``_updates``: fused in-place optimizer updates (Adagrad, SGD).
"""
