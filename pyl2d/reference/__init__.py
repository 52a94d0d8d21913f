"""Pure-PyTorch references: the oracle every other backend is tested against, and the
``torch`` backend. Written for clarity, not speed or memory."""
