"""Pure-NumPy twins of the compiled kernels, mirrored module for module.

``fastgd._numpy._<family>`` is the twin of ``fastgd._ext._<family>`` (built from
``src_c/_<family>.pyx``): each of its functions has the signature and the semantics of the
compiled kernel of the same name. It receives inputs the Python layer has already validated,
and fills ``out`` the same way. The twins are the runtime fallback when the extension is
missing and the oracle in every test; they are written to be obviously right, not fast.

- ``_pairwise``: pairwise squared Euclidean distances.
- ``_masked``: the masked residual, loss and gradients of W @ H.
- ``_updates``: fused in-place optimizer updates (Adagrad, SGD).
- ``_solvers``: factorize's iteration loop.
"""
