"""``python -m analysis``: render the report of an experiment, or query its tables with SQL."""

from __future__ import annotations

import sys

from analysis.load import AnalysisError, open_results
from spec_ray.orchestration.flags import Parser
from spec_ray.storage import schema as S


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m analysis", description="Render the report of an experiment, or query its tables with SQL."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{report,query}")
    report = sub.add_parser("report", help="render every figure the data supports and report.md with the claims")
    report.add_argument("results", help="an experiment folder (or a storage root of several); path or URI")
    report.add_argument(
        "--out", default=None, help="output folder, a path or a URI like RESULTS (default: RESULTS/report)"
    )
    query = sub.add_parser("query", help="run SQL over the tables runs, teacher_nodes, student_nodes, scalars")
    query.add_argument("results", help="an experiment folder (or a storage root of several); path or URI")
    query.add_argument("sql", help='e.g. "select p, avg(rho_mean) from scalars join runs using (run_id) group by p"')
    return parser


def query(results: str, sql: str) -> str:
    """The SQL's result as text; each table is a DuckDB view over its Arrow dataset."""
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
    try:
        frame = con.sql(sql).df()
    except duckdb.Error as err:
        raise AnalysisError(f"sql is invalid: {err}") from None
    return frame.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            from analysis.report import build_report

            out = args.out or f"{args.results.rstrip('/')}/report"  # a URI stays a URI
            path = build_report(args.results, out)
            print(f"wrote {path} and its figures")
        else:
            print(query(args.results, args.sql))
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
