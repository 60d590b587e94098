"""``python -m analysis``: render the report of an experiment, or query its tables with SQL."""

from __future__ import annotations

import sys

from analysis.load import AnalysisError, Results, open_results
from spec_ray.orchestration.flags import Parser
from spec_ray.storage import schema as S


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m analysis", description="Render the report of an experiment, or query its tables with SQL."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{report,query,bn-bias}")
    report = sub.add_parser("report", help="render every figure the data supports and report.md with the claims")
    report.add_argument("results", help="an experiment folder (or a storage root of several); path or URI")
    report.add_argument(
        "--out", default=None, help="output folder, a path or a URI like RESULTS (default: RESULTS/report)"
    )
    report.add_argument("--html", action="store_true", help="also index.html: the report as one self-contained page "
                        "(figures embedded; opens from disk)")  # fmt: skip
    tables = ", ".join((*S.TABLES, *S.OPTIONAL_TABLES, f"{S.CORRELATIONS} (corr_matrices as long rows)"))
    query = sub.add_parser("query", help=f"run SQL over the tables {tables} (the opt-in ones where stored)")
    query.add_argument("results", help="an experiment folder (or a storage root of several); path or URI")
    query.add_argument("sql", help='e.g. "select p, avg(rho_mean) from scalars join runs using (run_id) group by p"')
    query.add_argument("--out", default=None, help="write the result to FILE.csv or FILE.parquet (pandas reads "
                       "either) instead of printing it")  # fmt: skip
    bn = sub.add_parser("bn-bias", help="Luck Matters figs. 4 and 14: the signs of a pre-trained network's BN biases")
    sources = "a checkpoint path (the authors' {'net': ...}, a state dict), or vgg11_bn / vgg16_bn (torchvision's "
    bn.add_argument("sources", nargs="+", metavar="SOURCE", help=sources + "ImageNet weights: torchvision, a network)")
    bn.add_argument("--out", default="bn-bias", help="the folder for bn_bias.png and bn_bias.csv (default: bn-bias)")
    return parser


def bn_bias(sources: list[str], out: str) -> str:
    """Histograms of the BN biases of each source, and claim 15's verdict on them."""
    from pathlib import Path

    import pandas as pd

    from analysis.luck import bn_bias as B
    from analysis.plots import style

    biases = pd.concat([B.read_checkpoint(s) for s in sources], ignore_index=True)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    style()
    B.draw(biases, folder / "bn_bias")
    biases.to_csv(folder / "bn_bias.csv", index=False)
    claim = B.check(biases)
    lines = (claim.text, claim.evidence, f"verdict: {claim.verdict}", f"wrote {folder / 'bn_bias.png'}")
    return "\n".join(lines)


OUT_FORMATS = (".csv", ".parquet")


def query_frame(results: str, sql: str):
    """The SQL's result as a pandas frame; every table the results hold is a DuckDB view over its
    Arrow dataset (the opt-in ones where some experiment kept them), and ``correlations`` every
    correlation as a long row (``long_view``)."""
    try:
        import duckdb
    except ImportError:
        raise AnalysisError("the query command needs DuckDB: pip install 'spec-ray[duckdb]'") from None
    res = open_results(results)
    for line in res.warnings():  # the short pack's rows are in the tables; corrupt files are not
        print(line, file=sys.stderr)
    con = duckdb.connect()
    for table in S.TABLES:
        con.register(table, res.dataset(table))
    for table in S.OPTIONAL_TABLES:
        if any(res.holds(root, table) for root in res.roots):
            con.register(table, res.dataset(table, optional=True))
    long_view(con, res)
    try:
        return con.sql(sql).df()
    except duckdb.Error as err:
        kept = {S.MODULATION: "keep_modulation"}
        absent = [t for t in (*S.OPTIONAL_TABLES, S.CORRELATIONS) if t in sql and not res.has_any(t)]
        how = f"checkpoint.{kept.get(absent[0], 'keep_correlations')}" if absent else ""
        hint = f" ({', '.join(absent)}: not kept by these runs; see {how})" if absent else ""
        raise AnalysisError(f"sql is invalid: {err}{hint}") from None


LONG_SQL = """SELECT run_id, step, epoch, layer, CAST((i - 1) // students AS INTEGER) AS node,
    CAST((i - 1) % students AS INTEGER) AS student, CAST(corr[i] AS DOUBLE) AS corr
FROM corr_matrices, range(1, teachers * students + 1) AS pairs(i)"""
"""The ``corr_matrices`` table as long rows (docs/schema.md): one per run, checkpoint, layer, teacher and student."""


def long_view(con, res: Results) -> None:
    """``correlations``: every correlation as a long row, from ``corr_matrices`` and the long table of older
    experiments alike, so that SQL written for either layout runs on both."""
    matrices = any(res.holds(root, S.CORR_MATRICES) for root in res.roots)
    older = any(res.holds(root, S.CORRELATIONS) for root in res.roots)
    if older:
        con.register("correlations_before_0_2", res.dataset(S.CORRELATIONS, optional=True))
    parts = [LONG_SQL] * matrices + ["SELECT * FROM correlations_before_0_2"] * older
    if parts:
        con.sql(f"CREATE VIEW {S.CORRELATIONS} AS " + " UNION ALL BY NAME ".join(parts))


def query(results: str, sql: str, out: str | None = None) -> str:
    """The SQL's result as text, or written to ``out`` (.csv or .parquet) with a line saying so."""
    if out is not None and not out.endswith(OUT_FORMATS):
        raise AnalysisError(f"out={out!r} is invalid: allowed a file name ending in {' or '.join(OUT_FORMATS)}")
    frame = query_frame(results, sql)
    if out is None:
        return frame.to_string(index=False)
    try:
        frame.to_csv(out, index=False) if out.endswith(".csv") else frame.to_parquet(out, index=False)
    except OSError as err:
        raise AnalysisError(f"out={out!r} is not writable: {err.strerror or err}") from None
    return f"wrote {len(frame)} rows x {len(frame.columns)} columns to {out}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            from analysis.report import build_report

            out = args.out or f"{args.results.rstrip('/')}/report"  # a URI stays a URI
            path = build_report(args.results, out, html=args.html)
            print(f"wrote {path} and its figures")
        elif args.command == "bn-bias":
            print(bn_bias(args.sources, args.out))
        else:
            print(query(args.results, args.sql, args.out))
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
