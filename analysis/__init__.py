"""The read side of spec-ray: its Parquet traces as tidy frames, each paper's figures and claims, and a report.

* ``load``: open an experiment (or a storage root of them) and read its tables with push-down;
* ``registry``: figures and claims as records naming the runs and tables they need;
* ``icml``: ICML 2020's figures 5-10, loss curves and claims 1-6 and 13 (queries, figures, claims);
* ``luck``: Luck Matters' figures 4-6, 14-20 and claims 7-12, 14, 15 (queries, modulation, figures, claims,
  bn_bias);
* ``report``: every registered figure and claim the runs can feed, as ``report.md``;
* ``cli``: ``python -m analysis report`` and ``query`` (SQL over every table).

It imports neither torch nor Ray: pyarrow, pandas and seaborn only.
"""
