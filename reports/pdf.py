"""The audit report as PDF, in pure Python (fpdf2): no browser, no system libraries.

An auditor files the PDF; it must come out of a machine that has only Python. The
layout follows the HTML report section by section (headings, key-value tables,
data tables that break across pages with repeated headings, the SQL in a
monospace block). Text is set in DejaVu, the TrueType family matplotlib ships,
so model names, reasons and any other Unicode print as they are.
"""
from __future__ import annotations

from pathlib import Path

from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode, XPos, YPos

from reports.audit import AuditReport
from reports.audit_tables import TextTable, key_tables
from reports.formatting import cell, count, money, timestamp

FONT, MONO = "DejaVu", "DejaVuMono"
HEADING_FILL = (240, 244, 248)
FLAG_COLOR = (180, 35, 24)
OK_COLOR = (11, 122, 59)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


class AuditPdf(FPDF):
    """A4 landscape with a running footer (title, page x of y)."""

    def __init__(self, title: str):
        super().__init__(orientation="L", unit="mm", format="A4")
        self.report_title = title
        fonts = _font_dir()
        self.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font(FONT, "I", str(fonts / "DejaVuSans-Oblique.ttf"))
        self.add_font(MONO, "", str(fonts / "DejaVuSansMono.ttf"))
        self.set_auto_page_break(auto=True, margin=14)
        self.set_title(title)
        self.set_creator("inferledger")
        self.alias_nb_pages()

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT, "", 7)
        self.set_text_color(120)
        self.cell(0, 5, f"{self.report_title} · page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)

    def heading(self, text: str, level: int = 1) -> None:
        size = {0: 16, 1: 13, 2: 10.5}[level]
        if self.will_page_break(size + 12):
            self.add_page()
        self.ln(4 if level else 0)
        self.set_font(FONT, "B", size)
        self.multi_cell(0, size * 0.55, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if level == 1:
            self.set_draw_color(217, 226, 236)
            self.line(self.l_margin, self.get_y() + 0.5, self.w - self.r_margin, self.get_y() + 0.5)
            self.ln(2)
        self.set_font(FONT, "", 9)

    def paragraph(self, text: str, style: str = "", color: tuple[int, int, int] | None = None) -> None:
        self.set_font(FONT, style, 9)
        if color:
            self.set_text_color(*color)
        self.multi_cell(0, 4.6, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0)
        self.ln(1)

    def code(self, text: str) -> None:
        self.set_font(MONO, "", 7)
        self.set_fill_color(245, 247, 250)
        self.multi_cell(0, 3.4, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "", 9)
        self.ln(1.5)

    def key_values(self, pairs: list[tuple[str, str]]) -> None:
        self.table_of(TextTable("", ["", ""], [[k, v] for k, v in pairs], widths=(1, 3)), headings=False)

    def table_of(self, table: TextTable, headings: bool = True, font_size: float = 7.5) -> None:
        """A table that breaks across pages with its headings repeated; narrow tables stay narrow."""
        if not table.rows:
            self.paragraph("None.", "I")
            return
        self.set_font(FONT, "", font_size)
        rows = ([table.headers] if headings else []) + table.rows
        width = self.epw * min(1.0, max(len(table.headers), 3) / 9) if headings else self.epw * 0.75
        with self.table(
            col_widths=table.widths, width=width, align="LEFT", text_align=_aligns(table),
            first_row_as_headings=headings, headings_style=FontFace(emphasis="BOLD", fill_color=HEADING_FILL),
            line_height=font_size * 0.5, padding=0.8, wrapmode="WORD",
            cell_fill_mode=TableCellFillMode.NONE if headings else TableCellFillMode.EVEN_COLUMNS,
            cell_fill_color=HEADING_FILL,
        ) as grid:
            for row in rows:
                line = grid.row()
                for value in row:
                    line.cell(value)
        self.set_font(FONT, "", 9)
        self.ln(2)


def _aligns(table: TextTable) -> tuple[str, ...]:
    return tuple("RIGHT" if index in table.numeric else "LEFT" for index in range(len(table.headers)))


def write_pdf(report: AuditReport, path: Path, title: str, input_hash_doc: str, sample_doc: str,
              export: dict, symbol: str = "$") -> None:
    pdf = AuditPdf(title)
    pdf.add_page()
    tables = {table.title.split(" (")[0]: table for table in key_tables(report, symbol)}
    pdf.heading(title, 0)
    pdf.paragraph(f"Period {report.scope.date_from} to {report.scope.date_to} (UTC days, inclusive) · "
                  f"{'system ' + report.scope.system if report.scope.system else 'all systems'} · "
                  f"generated {timestamp(report.generated_at)} by {report.tool_version}", color=(82, 96, 109))
    _scope(pdf, report, export, symbol)
    _method(pdf, report, input_hash_doc, sample_doc)
    pdf.heading("3. Model inventory")
    pdf.table_of(tables["Model inventory"])
    pdf.heading("4. Decisions")
    for name in ("Decisions by outcome", "Decisions by model version", "Decisions by day"):
        pdf.heading(name.replace("Decisions by", "By"), 2)
        pdf.table_of(tables[name])
    pdf.heading("Human reviews by model version", 2)
    if report.reviews:
        pdf.table_of(tables["Human reviews by model version"])
    else:
        pdf.paragraph("No human reviews in scope.")
    _completeness(pdf, report, tables["Records per day: manifest vs view"])
    pdf.heading("6. Random sample of decisions")
    pdf.paragraph(f"Seed {report.seed}, {len(report.sample)} of {count(report.totals.get('decisions'))} decisions.")
    pdf.table_of(tables["Random sample"], font_size=6.5)
    _events(pdf, report)
    _queries(pdf, report)
    pdf.output(str(path))


def _scope(pdf: AuditPdf, report: AuditReport, export: dict, symbol: str) -> None:
    totals = report.totals
    pdf.heading("1. Scope and period")
    pdf.key_values([
        ("Period", f"{timestamp(report.scope.start)} to {timestamp(report.scope.end)} (end exclusive)"),
        ("System", report.scope.system or "all systems (service names)"),
        ("Records in scope", count(totals.get("records"))),
        ("Decisions in scope", f"{count(totals.get('decisions'))} (records with a decision label)"),
        ("Systems / model versions", f"{count(totals.get('systems'))} / {count(totals.get('model_versions'))}"),
        ("First / last record", f"{timestamp(totals.get('first_seen'))} / {timestamp(totals.get('last_seen'))}"),
        ("Inference cost in scope", money(totals.get("cost_usd"), symbol)),
        ("Decision population export", f"{export['parquet']}, {export['csv']} ({count(export['rows'])} rows)"),
    ])


def _method(pdf: AuditPdf, report: AuditReport, input_hash_doc: str, sample_doc: str) -> None:
    pdf.heading("2. How the evidence was produced")
    pdf.paragraph(f"Every figure comes from the {len(report.queries)} queries listed in the appendix (section 8), "
                  f"run by {report.tool_version} on a read-only, "
                  "in-memory DuckDB connection over the warehouse's Parquet files (view inferences: one row per span, "
                  "latest cost version). The manifest's hash chain was verified with inferledger verify's checks "
                  "for the period. The queries, the chain head and the export files' SHA-256 are also in "
                  "evidence.json.")
    pdf.heading("Input hash", 2)
    pdf.paragraph(input_hash_doc)
    pdf.heading("Random sample", 2)
    pdf.paragraph(sample_doc)



def _queries(pdf: AuditPdf, report: AuditReport) -> None:
    pdf.heading("8. Appendix: the queries that produced the evidence")
    pdf.paragraph("In the order they ran, with their parameters.")
    for index, query in enumerate(report.queries, start=1):
        rows = f" ({count(query.rows)} rows)" if query.rows >= 0 else ""
        pdf.paragraph(f"{index}. {query.purpose}{rows}", "B")
        params = f"\n\n-- parameters: {', '.join(cell(p) for p in query.params)}" if query.params else ""
        pdf.code(query.sql + params)


def _completeness(pdf: AuditPdf, report: AuditReport, table: TextTable) -> None:
    pdf.heading("5. Population completeness")
    pdf.heading("Records per day: manifest vs view (all systems)", 2)
    pdf.paragraph("Landed = rows the collector acknowledged and landed, summed from the manifest's segment entries "
                  "per day. A day reconciles when landed = in view + duplicates removed + rows deleted by retention "
                  "or erasure.")
    pdf.paragraph("Every day reconciles." if report.reconciled else "Some days do not reconcile.", "B",
                  OK_COLOR if report.reconciled else FLAG_COLOR)
    pdf.table_of(table)
    pdf.heading("Gaps in time" + (f" (system {report.scope.system})" if report.scope.system else ""), 2)
    pdf.paragraph("Days without any record: " + ", ".join(d.isoformat() for d in report.empty_days) + "."
                  if report.empty_days else "Every day of the period has records.")
    if report.empty_hours:
        pdf.paragraph(f"{count(report.empty_hours_total)} hours without any record, in {len(report.empty_hours)} "
                      "range(s): " + "; ".join(report.empty_hours) + ".")
    else:
        pdf.paragraph("Every hour of the period has records.")
    pdf.heading("Gaps in sequence", 2)
    if report.sequence:
        for finding in report.sequence:
            pdf.paragraph(finding, color=FLAG_COLOR)
    else:
        pdf.paragraph("None: manifest entries are numbered without holes, every part of every landed write-ahead "
                      "log file has its entry, and log files were landed in order.")
    if report.quarantined:
        pdf.table_of(TextTable("", ["Seq", "Quarantined file", "Reason"],
                               [[cell(q["seq"]), cell(q["file"]), cell(q["reason"])] for q in report.quarantined],
                               widths=(1, 5, 6)))
    _chain(pdf, report)


def _chain(pdf: AuditPdf, report: AuditReport) -> None:
    chain = report.chain
    pdf.heading("Hash chain", 2)
    pdf.key_values([
        ("Result", "intact" if chain.intact else f"{len(chain.problems)} problem(s)"),
        ("Chain head", f"seq {chain.head_seq} · {chain.head_hash}"),
        ("Entries checked", f"{count(chain.entries)} (the whole chain)"),
        ("Files hashed", f"{count(chain.files_checked)} files of the period, {count(chain.bytes_hashed)} bytes"),
        ("Signed heads checked", count(chain.signed_heads_checked)),
    ])
    for problem in chain.problems[:100]:
        pdf.paragraph(problem, color=FLAG_COLOR)


def _events(pdf: AuditPdf, report: AuditReport) -> None:
    pdf.heading("7. Drift, alerts, repricings, erasures and retention")
    for section in report.events:
        pdf.heading(section.title, 2)
        if not section.available:
            pdf.paragraph(f"None recorded (no {section.view} records exist in this warehouse).", "I")
            continue
        if not section.total:
            pdf.paragraph("None recorded in the period.", "I")
            continue
        listed = f", {count(section.listed_total)} listed" if section.listed_total != section.total else ""
        shown = f" (first {len(section.rows)} shown)" if section.truncated else ""
        pdf.paragraph(f"{section.explanation} {count(section.total)} in the period{listed}{shown}.")
        if section.rows:
            pdf.table_of(TextTable("", [c.replace("_", " ") for c in section.columns],
                                   [[cell(row[c]) for c in section.columns] for row in section.rows]))
