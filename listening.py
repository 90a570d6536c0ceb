"""A listening page: index.html beside sample.py's outputs, one player, spectrogram, caption and
settings per piece, to open in a browser.

The page is rebuilt from pieces.json in the same folder at every call, so pieces from several
runs of sample.py gather on one page (a file written again replaces its entry; a file deleted
since drops out). It links only the files listed there, which sample.py wrote into that folder,
by their bare names; every caption, file name and setting is HTML-escaped, so a caption such as
"<script>" is shown as text, never run.
"""

import html
import json
import os
import urllib.parse
import warnings

from common import atomic_write_text

PAGE, MANIFEST = "index.html", "pieces.json"

STYLE = """body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
section { border-top: 1px solid #ccc; padding: 1rem 0; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
img { max-width: 100%; display: block; margin: .5rem 0; }
audio { width: 100%; }
table { border-collapse: collapse; font-size: .85rem; }
td { padding: .1rem .8rem .1rem 0; vertical-align: top; }
td:first-child { color: #666; }"""


def read_manifest(folder):
    """The pieces already on the page: a list of {"audio", "picture", "settings"}, names relative
    to the folder; a manifest that cannot be read starts the page afresh (with a warning)."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            pieces = json.load(f)
        if not isinstance(pieces, list) or not all(isinstance(p, dict) and {"audio", "picture", "settings"} <= p.keys()
                                                   for p in pieces):
            raise ValueError("not a list of pieces")
        return pieces
    except (OSError, ValueError) as error:
        warnings.warn(f"{path} cannot be read ({error}); the listening page starts again from this call's pieces",
                      stacklevel=2)
        return []


def on_page(piece, folder):
    """Whether a manifest entry may be linked: bare file names (no folders, no URLs) of files that exist."""
    names = (piece["audio"], piece["picture"])
    return all(isinstance(n, str) and n == os.path.basename(n) and n not in ("", ".", "..")
               and os.path.isfile(os.path.join(folder, n)) for n in names)


def render(pieces, title):
    """The page's HTML; every piece of text escaped, every link a quoted bare file name."""
    sections = []
    for piece in pieces:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in piece["settings"].items())
        caption = piece["settings"].get("caption", piece["audio"])
        audio, picture = (urllib.parse.quote(piece[k]) for k in ("audio", "picture"))
        sections.append(f'<section>\n<h2>{html.escape(str(caption))}</h2>\n'
                        f'<audio controls preload="none" src="{audio}"></audio>\n'
                        f'<img src="{picture}" alt="log-mel spectrogram of {html.escape(piece["audio"])}">\n'
                        f'<table>{rows}</table>\n</section>')
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f'<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n'
            + "\n".join(sections) + "\n</body>\n</html>\n")


def add_to_page(entries, title="FluxMusic: pieces"):
    """Add sample.py's new pieces ({"audio": path, "picture": path, "settings": {...}}, all in one
    folder) to that folder's page; returns the page's path."""
    folder = os.path.dirname(entries[0]["audio"]) or "."
    new = []
    for entry in entries:
        if any(os.path.abspath(os.path.dirname(entry[k]) or ".") != os.path.abspath(folder) for k in ("audio", "picture")):
            raise ValueError(f"the listening page links files of one folder; {entry['audio']} is not in {folder}")
        new.append({"audio": os.path.basename(entry["audio"]), "picture": os.path.basename(entry["picture"]),
                    "settings": {str(k): str(v) for k, v in entry["settings"].items()}})
    fresh = {piece["audio"] for piece in new}
    pieces = [p for p in read_manifest(folder) if p["audio"] not in fresh] + new
    pieces = [p for p in pieces if on_page(p, folder)]
    atomic_write_text(os.path.join(folder, MANIFEST), json.dumps(pieces, indent=1, ensure_ascii=False) + "\n")
    page = os.path.join(folder, PAGE)
    atomic_write_text(page, render(pieces, title))
    return page
