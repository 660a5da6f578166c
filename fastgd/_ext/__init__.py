"""Compiled kernels of fastgd (private: use the functions exported by ``fastgd``).

One module per kernel family, each built from ``src_c/<module>.pyx``:

- ``_build_info``: how the extension was built, and the OpenMP runtime it sees.
- ``_memory``: arrays whose data start on a cache line.
- ``_pairwise``: pairwise squared Euclidean distances.
- ``_updates``: fused in-place optimizer updates (Adagrad, SGD).
"""
