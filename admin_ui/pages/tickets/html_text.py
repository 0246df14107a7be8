"""An HTML mail part turned into plain text for display: never live HTML.

The page shows the text, escaped by the template like any other. Scripts and styles are
dropped with their content; a link is shown as its text with the address after it in
brackets, never as a link (so no ``javascript:`` link can be clicked); an image is shown as
its alt text only, so no remote image is ever fetched.
"""

from __future__ import annotations

from html.parser import HTMLParser

_DROPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe",
                      "object", "embed", "svg", "math"})
_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                     "table", "ul", "ol", "blockquote", "pre", "hr", "section", "article"})
MAX_LINK_SHOWN = 200


class _ToText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.dropping = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self.dropping += 1
            return
        if self.dropping:
            return
        if tag in _BLOCKS:
            self.out.append("\n")
        if tag == "a":
            self.links.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _DROPPED:
            self.handle_starttag(tag, attrs)
            if tag == "a":
                self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping:
            return
        if tag == "a" and self.links:
            href = (self.links.pop() or "").strip()
            if href and not href.startswith("#"):
                self.out.append(f" [{href[:MAX_LINK_SHOWN]}]")
        if tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _ToText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip()
