"""streamrec: the recommender as plain, typed Python (no Bytewax here)."""

import os

# One process per core, and matrix products of a few hundred rows: a second BLAS thread only
# competes with the other processes (and spins). Set before numpy is first imported; a user's
# own setting wins. Replaying Online Retail in one process took 30.5 s of CPU with one thread,
# 38.4 s with OpenBLAS's default two.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
