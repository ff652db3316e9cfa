"""streamrec: Bytewax dataflows and the command line; the logic lives in ``operators``."""
