"""One self-contained HTML page with a run's results, figures and diagnostics.

The page embeds its images as ``data:`` URIs and its CSS inline, so it can be
mailed or archived as a single file and opened offline.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path

from aepca._files import write_atomic
from aepca.validation import invalid_value

__all__ = ["write_report"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MISSING = "—"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #222; background: #fff; max-width: 1100px; margin: 2rem auto;
       padding: 0 1.2rem; line-height: 1.5; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd;
     padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin: 0 0 0.4rem; }
table { border-collapse: collapse; font-size: 0.92rem; margin: 0.6rem 0; }
th, td { padding: 0.35rem 0.7rem; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f3f5f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
.table-wrap { overflow-x: auto; }
figure { margin: 1.4rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92rem; margin-top: 0.3rem; }
ul.notes li { margin: 0.25rem 0; }
.diag { border-left: 4px solid #c0392b; background: #fdf3f2; padding: 0.7rem 1rem;
        margin: 0.8rem 0; }
.diag dt { font-weight: 600; }
.diag dd { margin: 0 0 0.4rem 0; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1.2rem; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
details { margin-top: 0.8rem; }
summary { cursor: pointer; color: #3a6fb0; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
footer { margin-top: 3rem; color: #777; font-size: 0.85rem; border-top: 1px solid #ddd;
         padding-top: 0.6rem; }
"""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("aepca")
    except metadata.PackageNotFoundError:
        import aepca

        return getattr(aepca, "__version__", "unknown")


def _format_value(value) -> str:
    """Text for one cell: 4 significant digits for floats, an em dash for None."""
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    return str(value)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _json_default(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)  # tolist: numpy arrays and scalars


def _table(rows) -> str:
    if not rows:
        return "<p>No results.</p>"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(f"<tr>{''.join(_cell(row.get(c)) for c in columns)}</tr>" for row in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(value) -> str:
    css = ' class="num"' if isinstance(value, numbers.Real) and not isinstance(value, bool) else ""
    return f"<td{css}>{_esc(_format_value(value))}</td>"


def _figure(caption, png_path) -> str:
    png_path = Path(png_path)
    if not png_path.is_file():
        raise FileNotFoundError(str(invalid_value("figures", "an existing PNG file", f"png_path={str(png_path)!r}",
                                                  "Write the figure before the report.")))
    data = png_path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise invalid_value("figures", "a PNG file", f"png_path={str(png_path)!r} (no PNG signature)", "Save figures as PNG.")
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _diagnostic(item) -> str:
    if not isinstance(item, Mapping) or "problem" not in item:
        raise invalid_value("diagnostics", "dicts with keys 'problem', 'evidence' and 'fix'", f"{item!r:.200}",
                            "Describe each problem as such a dict.")
    details = "".join(f"<dt>{label}</dt><dd>{_esc(item[key])}</dd>"
                      for key, label in (("evidence", "Evidence"), ("fix", "Fix")) if item.get(key) is not None)
    return f'<div class="diag"><h3>{_esc(item["problem"])}</h3><dl>{details}</dl></div>'


def _definitions(items) -> str:
    """``(name, text)`` pairs as a list of settings."""
    return '<dl class="settings">' + "".join(f"<dt>{_esc(key)}</dt><dd>{_esc(text)}</dd>" for key, text in items) + "</dl>"


def _settings(metrics) -> str:
    scalars = [(key, _format_value(value)) for key, value in metrics.items()
               if value is None or isinstance(value, (str, numbers.Number))]
    full = json.dumps(metrics, indent=2, default=_json_default, ensure_ascii=False)
    return ((_definitions(scalars) if scalars else "")
            + f"<details><summary>Full run settings and metrics (JSON)</summary><pre>{_esc(full)}</pre></details>")


def _record(record: Mapping) -> str:
    def text(value):
        if isinstance(value, Mapping):
            return ", ".join(f"{key} {text(item)}" for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return "; ".join(text(item) for item in value)
        return _format_value(value)

    return _definitions((key, text(value)) for key, value in record.items())


def write_report(path, *, title, metrics, figures, table_rows, notes=(), diagnostics=(), tables=(), record=None):
    """Write one self-contained HTML report and return its path.

    ``metrics`` is a JSON-able dict of run settings and results (top-level
    scalars are listed, the whole dict is shown as JSON on demand);
    ``figures`` is a list of ``(caption, png_path)``; ``table_rows`` a list of
    dicts that share their keys; ``notes`` short conclusions; ``diagnostics``
    dicts with ``problem``, ``evidence`` and ``fix``; ``tables`` more
    ``(title, rows)`` after the results; ``record`` how the run was made
    (command, inputs, preprocessing, versions), listed item by item. All text
    is escaped and the file is replaced atomically.
    """
    if not isinstance(metrics, Mapping):
        raise invalid_value("metrics", "a dict", f"metrics={metrics!r:.200}", "Pass the run's metrics dict.")
    for i, row in enumerate(table_rows):
        if not isinstance(row, Mapping):
            raise invalid_value(f"table_rows[{i}]", "a dict", f"{row!r:.200}", "Pass one dict per table row.")
    sections = []
    if notes:
        items = "".join(f"<li>{_esc(note)}</li>" for note in notes)
        sections.append(f'<h2>Notes</h2><ul class="notes">{items}</ul>')
    if diagnostics:
        sections.append("<h2>Diagnostics</h2>" + "".join(_diagnostic(d) for d in diagnostics))
    sections.append("<h2>Results</h2>" + _table(list(table_rows)))
    for table_title, rows in tables:
        sections.append(f"<h3>{_esc(table_title)}</h3>" + _table(list(rows)))
    if figures:
        sections.append("<h2>Figures</h2>" + "".join(_figure(caption, png) for caption, png in figures))
    if record:
        sections.append("<h2>How this run was made</h2>" + _record(record))
    if metrics:
        sections.append("<h2>Run settings</h2>" + _settings(metrics))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{_esc(title)}</h1>\n"
        + "\n".join(sections)
        + f"\n<footer>Generated by aepca {_esc(_version())} on {_esc(now)}.</footer>"
        "</body></html>\n"
    )
    return write_atomic(path, page.encode("utf-8"))
