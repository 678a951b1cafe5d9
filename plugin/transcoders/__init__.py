"""transcoders: SAEs, transcoders and skip transcoders with sparsify and Delphi."""

import os

__version__ = "0.1.0"

# sparsify picks its sparse decoder when it is first imported: Triton's when Triton is
# installed, which fails on a machine without CUDA. A PyPI torch brings Triton along,
# so without a GPU ask sparsify for its eager decoder unless the user chose already.
if "SPARSIFY_DISABLE_TRITON" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
