"""Each closed set of kinds as records in one registry (``registry``): torch-free, so every command line and the read
side can read them."""
