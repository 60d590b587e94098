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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{report,query,bn-bias}")
    report = sub.add_parser("report", help="render every figure the data supports and report.md with the claims")
    report.add_argument("results", help="an experiment folder (or a storage root of several); path or URI")
    report.add_argument(
        "--out", default=None, help="output folder, a path or a URI like RESULTS (default: RESULTS/report)"
    )
    tables = ", ".join((*S.TABLES, *S.OPTIONAL_TABLES))
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
    Arrow dataset (``correlations`` and ``modulation`` where some experiment kept them)."""
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
        if res.has_any(table):
            con.register(table, res.dataset(table, optional=True))
    try:
        return con.sql(sql).df()
    except duckdb.Error as err:
        absent = [t for t in S.OPTIONAL_TABLES if t in sql and not res.has_any(t)]
        hint = f" ({', '.join(absent)}: not kept by these runs; see checkpoint.keep_{absent[0]})" if absent else ""
        raise AnalysisError(f"sql is invalid: {err}{hint}") from None


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
            path = build_report(args.results, out)
            print(f"wrote {path} and its figures")
        elif args.command == "bn-bias":
            print(bn_bias(args.sources, args.out))
        else:
            print(query(args.results, args.sql, args.out))
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
