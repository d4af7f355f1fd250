"""Rendering: turns a report into text, JSON or HTML and reads nothing else.

No database, no Feast: a report (the schema-1 dict of DESIGN.md) in, a string out.
"""

from feast_parity.render.html import render_html
from feast_parity.render.json_report import exit_code, to_json
from feast_parity.render.text import printable, render_text

__all__ = ["exit_code", "printable", "render_html", "render_text", "to_json"]
