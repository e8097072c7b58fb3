"""Markdown -> one self-contained HTML file (images inlined as base64 data URIs, CSS inline).

Handles the subset the report writes: ATX headings, paragraphs, `-` lists, pipe tables with an
alignment row, `> ` notes, images alone on a line, and inline `code`, **bold**, *italic*. Everything
else is escaped text, so nothing in the Markdown can pull in an external resource.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.86em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .55em; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
img { max-width: 100%; height: auto; display: block; margin: .6em 0; }
blockquote { border-left: 4px solid #E69F00; margin: .8em 0; padding: .3em .9em; background: #fff8ec; }
figcaption { font-size: .85em; color: #555; }
"""
_ALIGN = {"l": "left", "r": "right", "c": "center"}
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


def inline(text: str) -> str:
    """Escape, then `code`, **bold**, *italic* (code spans are protected from the other two)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _align(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "c"
    return "r" if cell.endswith(":") else "l"


def _table(lines: list[str]) -> str:
    head = _cells(lines[0])
    aligns = [_align(c) for c in _cells(lines[1])] if len(lines) > 1 else ["l"] * len(head)
    aligns += ["l"] * (len(head) - len(aligns))

    def row(cells: list[str], tag: str) -> str:
        return (
            "<tr>"
            + "".join(
                f'<{tag} style="text-align:{_ALIGN[a]}">{inline(c)}</{tag}>'
                for c, a in zip(cells, aligns, strict=False)
            )
            + "</tr>"
        )

    body = "\n".join(row(_cells(x), "td") for x in lines[2:])
    return f"<table>\n<thead>{row(head, 'th')}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _image(alt: str, src: str, base: Path) -> str:
    """Inline a figure the report wrote: a plain file name in the report's own folder with an image suffix.

    Anything else (another folder, `..`, an absolute path, a link, another type) is never read: text from an
    experiment file (its description) must not be able to put a local file into a shareable report.
    """
    path = base / src
    own = (
        Path(src).name == src
        and not src.startswith(".")
        and path.suffix.lower() in _MIME
        and not path.is_symlink()
        and path.resolve().parent == base.resolve()
    )
    if not own:
        return f"<p><em>figure not embedded (not a figure of this report): {html.escape(src)}</em></p>"
    if not path.is_file():
        return f"<p><em>missing figure: {html.escape(src)}</em></p>"
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt_text = html.escape(alt)
    return f'<figure><img alt="{alt_text}" src="data:{mime};base64,{data}"><figcaption>{alt_text}</figcaption></figure>'


def markdown_to_html(markdown: str, base: Path, title: str = "report") -> str:
    """Convert the report's Markdown to a standalone HTML page; relative image paths resolve against `base`."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if m := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            level = len(m.group(1))
            anchor = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{inline(m.group(2))}</h{level}>')
            i += 1
        elif m := _IMAGE.match(stripped):
            out.append(_image(m.group("alt"), m.group("src"), base))
            i += 1
        elif stripped.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
        elif re.match(r"^[-*]\s+", stripped):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                i += 1
                while (
                    i < len(lines)
                    and lines[i].startswith("  ")
                    and lines[i].strip()
                    and not re.match(r"^\s*[-*]\s+", lines[i])
                ):
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{inline(item)}</li>")
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif stripped.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            out.append(f"<blockquote>{inline(' '.join(quote))}</blockquote>")
        else:
            para = [stripped]
            i += 1
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i].strip()):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _starts_block(stripped: str) -> bool:
    return bool(
        re.match(r"^(#{1,6})\s", stripped)
        or _IMAGE.match(stripped)
        or stripped.startswith(("|", ">"))
        or re.match(r"^[-*]\s+", stripped)
    )


def write_html(md_path: Path, html_path: Path | None = None, title: str | None = None) -> Path:
    """Render `md_path` to `html_path` (default: the same name with .html), images inlined."""
    html_path = html_path or md_path.with_suffix(".html")
    text = md_path.read_text(encoding="utf-8")
    html_path.write_text(markdown_to_html(text, md_path.parent, title or md_path.stem), encoding="utf-8")
    return html_path
