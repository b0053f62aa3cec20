"""A page's document, as a browser parses it and as htmx's WebSocket extension changes it.

The page's HTML and every message are parsed by html5lib, as a browser's parser does (a table
row at the top of a message is dropped, as in the browser). Each top-level element of a message
is swapped out of band as htmx does: `hx-swap-oob="true"` (or no value) replaces the element with
the same id; `innerHTML`, `beforeend`, `afterbegin`, `beforebegin`, `afterend`, `delete` and
`none` do what htmx does, on the element with the same id or, after a colon, on what a selector
matches. A swap whose target is missing is recorded in `errors` with htmx's name for it
(`htmx:oobErrorNoTarget`), where the browser would log it.

Selectors: tag, `#id`, `.class` and `[attribute]`/`[attribute="value"]` in any combination,
`:not(:has(#id))` (the only pseudo-class liveroom pushes), and the descendant combinator.
"""

import copy
import re
import xml.etree.ElementTree as ET

import html5lib

Element = ET.Element

STYLES = {"outerHTML", "innerHTML", "beforeend", "afterbegin", "beforebegin", "afterend",
          "delete", "none"}  # fmt: skip
SIMPLE = re.compile(
    r"(?P<tag>[a-zA-Z][\w-]*)?"
    r"(?P<rest>(?:#[\w-]+|\.[\w-]+|\[[\w-]+(?:=\"[^\"]*\")?\])*)"
    r"(?::not\(:has\(#(?P<absent>[\w-]+)\)\))?$"
)
PART = re.compile(r"#([\w-]+)|\.([\w-]+)|\[([\w-]+)(?:=\"([^\"]*)\")?\]")


def parse_document(html: str) -> Element:
    return html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)


def parse_fragment(html: str) -> Element:
    return html5lib.parseFragment(
        html, container="div", treebuilder="etree", namespaceHTMLElements=False
    )


def text_of(element: Element) -> str:
    """The element's text as a person reads it: its words, spaces folded."""
    return " ".join("".join(element.itertext()).split())


class Document:
    def __init__(self, html: str) -> None:
        self.root = parse_document(html)
        self.errors: list[str] = []

    # Reading

    def select(self, selector: str) -> list[Element]:
        """The elements `selector` matches, in document order."""
        *ancestors, last = selector.split()
        found = []
        for element in self.root.iter():
            if matches(element, last, self) and self._has_ancestors(element, ancestors):
                found.append(element)
        return found

    def select_one(self, selector: str) -> Element | None:
        found = self.select(selector)
        return found[0] if found else None

    def text(self, selector: str) -> str:
        """The text of the first element `selector` matches ("" if none does)."""
        element = self.select_one(selector)
        return "" if element is None else text_of(element)

    def by_id(self, element_id: str) -> Element | None:
        return next((e for e in self.root.iter() if e.get("id") == element_id), None)

    def _has_ancestors(self, element: Element, ancestors: list[str]) -> bool:
        if not ancestors:
            return True
        parents = self._parents()
        wanted = list(ancestors)
        node = parents.get(element)
        while node is not None and wanted:
            if matches(node, wanted[-1], self):
                wanted.pop()
            node = parents.get(node)
        return not wanted

    def _parents(self) -> dict[Element, Element]:
        return {child: parent for parent in self.root.iter() for child in parent}

    # Changing, as htmx does

    def apply(self, message: str) -> None:
        """Swap every top-level element of `message` out of band, in order."""
        for element in list(parse_fragment(message)):
            self.swap(element)

    def swap(self, element: Element) -> None:
        oob = element.attrib.pop("hx-swap-oob", "true") or "true"
        if oob == "true":
            style, selector = "outerHTML", f"#{element.get('id')}"
        elif ":" in oob:
            style, selector = oob.split(":", 1)
        else:
            style, selector = oob, f"#{element.get('id')}"
        if style not in STYLES:
            self.errors.append(f"htmx:oobSwap unknown style {style!r}")
            return
        targets = self.select(selector) if selector != "#None" else []
        if not targets:
            self.errors.append(f"htmx:oobErrorNoTarget {selector}")
            return
        for target in targets:
            self._swap_one(style, target, element)

    def _swap_one(self, style: str, target: Element, element: Element) -> None:
        parents = self._parents()
        parent = parents.get(target)
        if style == "none":
            return
        if style == "innerHTML":
            _set_children(target, element)
        elif style == "beforeend":
            _append_children(target, element)
        elif style == "afterbegin":
            _prepend_children(target, element)
        elif parent is None:
            self.errors.append(f"htmx: cannot {style} the document's root")
        elif style == "outerHTML":
            _replace(parent, target, element)
        elif style == "delete":
            _remove(parent, target)
        elif style == "beforebegin":
            for child in reversed(_copy_children(element)):
                parent.insert(list(parent).index(target), child)
        elif style == "afterend":
            index = list(parent).index(target) + 1
            for offset, child in enumerate(_copy_children(element)):
                parent.insert(index + offset, child)


def matches(element: Element, simple: str, document: Document) -> bool:
    """Whether `element` matches one compound selector (no combinator)."""
    found = SIMPLE.match(simple)
    if found is None:
        raise ValueError(f"liveroom.testing does not read the selector {simple!r}")
    if not isinstance(element.tag, str) or element.tag == "DOCUMENT_FRAGMENT":
        return False
    if found["tag"] and element.tag != found["tag"].lower():
        return False
    for element_id, class_name, attribute, value in PART.findall(found["rest"] or ""):
        if element_id and element.get("id") != element_id:
            return False
        if class_name and class_name not in (element.get("class") or "").split():
            return False
        if attribute and (element.get(attribute) is None
                          or (value and element.get(attribute) != value)):  # fmt: skip
            return False
    if found["absent"]:
        return not any(child.get("id") == found["absent"] for child in element.iter())
    return True


def _copy_children(element: Element) -> list[Element]:
    return [_copy(child) for child in element]


def _copy(element: Element) -> Element:
    return copy.deepcopy(element)  # with its tail: the text after it goes where it goes


def _set_children(target: Element, source: Element) -> None:
    for child in list(target):
        target.remove(child)
    target.text = source.text
    target.extend(_copy_children(source))


def _append_children(target: Element, source: Element) -> None:
    children = list(target)
    if source.text:
        if children:
            children[-1].tail = (children[-1].tail or "") + source.text
        else:
            target.text = (target.text or "") + source.text
    target.extend(_copy_children(source))


def _prepend_children(target: Element, source: Element) -> None:
    copies = _copy_children(source)
    if copies:
        copies[-1].tail = (copies[-1].tail or "") + (target.text or "")
        target.text = source.text
    for index, child in enumerate(copies):
        target.insert(index, child)


def _replace(parent: Element, target: Element, element: Element) -> None:
    replacement = _copy(element)
    replacement.tail = target.tail
    index = list(parent).index(target)
    parent.remove(target)
    parent.insert(index, replacement)


def _remove(parent: Element, target: Element) -> None:
    siblings = list(parent)
    index = siblings.index(target)
    if target.tail:  # the text after it stays
        if index:
            siblings[index - 1].tail = (siblings[index - 1].tail or "") + target.tail
        else:
            parent.text = (parent.text or "") + target.tail
    parent.remove(target)


class Page:
    """What a room page shows, read as a person would: the names on the list, any element's
    text, who is online. `apply(message)` changes it as htmx does."""

    # Every id the server pushes into, for a page followed from its socket alone, without its
    # HTML (a benchmark's client): the ids of docs/templates.md, empty.
    SKELETON = (
        '<div class="room"><p id="connection"></p><p id="member-count"></p>'
        '<p id="online-count"></p><section id="you"><strong id="my-name"></strong>'
        '<form id="hand-form"></form></section><ul id="members"></ul>'
        '<p id="members-hint"></p><p id="announcement"></p></div>'
    )

    def __init__(self, html: str | None = None) -> None:
        self.document = Document(html if html is not None else self.SKELETON)

    def apply(self, message: str) -> None:
        self.document.apply(message)

    def entries(self) -> dict[str, str]:
        """The list's entries in page order: each entry's id and the name it shows."""
        return {
            entry.get("id") or "": " ".join(
                text_of(name)
                for name in entry.iter()
                if "member__name" in (name.get("class") or "").split()
            )
            for entry in self.document.select("#members [id]")
            if (entry.get("id") or "").startswith("member-")
        }

    def members(self) -> list[str]:
        """The names on the member list, in page order."""
        return list(self.entries().values())

    def presence(self) -> dict[str, str]:
        """Each entry's presence as shown ("online" or "away"), by the entry's id."""
        return {
            entry_id: self.text(f"#presence-{entry_id.removeprefix('member-')}")
            for entry_id in self.entries()
            if self.document.by_id(f"presence-{entry_id.removeprefix('member-')}") is not None
        }

    def presence_of(self, name: str) -> str | None:
        """ "online" or "away" as the page shows it for the member called `name`."""
        found = [entry_id for entry_id, shown in self.entries().items() if shown == name]
        return self.presence().get(found[0]) if found else None

    def text(self, selector: str) -> str:
        return self.document.text(selector)

    def select(self, selector: str) -> list:
        return self.document.select(selector)

    @property
    def errors(self) -> list[str]:
        """What htmx would have logged as errors in the browser's console."""
        return self.document.errors
