"""streamrec: the recommender as plain, typed Python (no Bytewax here)."""
