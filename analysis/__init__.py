"""The read side of spec-ray: its Parquet traces as tidy frames, each paper's figures and claims, and a report.

* ``load``: open an experiment (or a storage root of them) and read its tables with push-down;
* ``registry``: figures and claims as records naming the runs and tables they need;
* ``icml``: ICML 2020's figures 5-9, loss curves and claims 1-6 (queries, figures, claims);
* ``luck``: Luck Matters' figures 5, 15-20 and claims 7-12 (queries, modulation, figures, claims);
* ``report``: every registered figure and claim the runs can feed, as ``report.md``;
* ``cli``: ``python -m analysis report`` and ``query`` (SQL over every table).

It imports neither torch nor Ray: pyarrow, pandas and seaborn only.
"""
