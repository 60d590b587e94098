"""Networks: one network's shape (``arch``), networks as tensor records, the packed parts."""
