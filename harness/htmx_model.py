"""A room page as the htmx ws extension keeps it: apply each WebSocket message the same way.

htmx swaps every top-level element of a message out of band: `hx-swap-oob="true"` replaces the
element with the same id, "delete" removes it, "beforeend:SELECTOR" appends the element's
children to whatever SELECTOR matches. An element whose target is missing is dropped, and htmx
reports it as an error; so does this model.
"""

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

NOT_HAS = re.compile(r"^#(?P<target>[\w-]+):not\(:has\(#(?P<absent>[\w-]+)\)\)$")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list["Element"] = field(default_factory=list)
    text: str = ""

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    def all_text(self) -> str:
        return " ".join([self.text, *(child.all_text() for child in self.children)]).strip()


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        self.stack.append(element)

    def handle_endtag(self, tag) -> None:
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data) -> None:
        self.stack[-1].text += data.strip() and " " + data.strip()


def parse(html: str) -> list[Element]:
    builder = _TreeBuilder()
    builder.feed(html)
    return builder.root.children


@dataclass
class RoomPage:
    members: dict[str, str] = field(default_factory=dict)  # dom id -> name, in page order
    presence: dict[str, str] = field(default_factory=dict)  # member dom id -> "online"/"away"
    count: str = ""
    online_count: str = ""
    my_name: str = ""
    announcement: str = ""
    errors: list[str] = field(default_factory=list)

    def apply(self, message: str) -> None:
        for element in parse(message):
            self._swap(element)

    def names(self) -> list[str]:
        return list(self.members.values())

    def state_of(self, name: str) -> str | None:
        """ "online" or "away" as the page shows it for the member called `name`."""
        return next(
            (self.presence.get(i) for i, shown in self.members.items() if shown == name), None
        )

    def _swap(self, element: Element) -> None:
        oob = element.attrs.get("hx-swap-oob", "true")
        style, _, selector = oob.partition(":") if ":" in oob else (oob, "", f"#{element.id}")
        style = "outerHTML" if style == "true" else style
        if not (match := NOT_HAS.match(selector)):
            target = selector.removeprefix("#")
        elif match["absent"] in self.members:
            target = None
        else:
            target = match["target"]
        if target is None or not self._exists(target):
            self.errors.append(f"htmx:oobErrorNoTarget {selector}")
            return
        if style == "beforeend" and target == "members":
            for li in element.children:
                self._show_member(li)
        elif style == "delete":
            del self.members[target]
            self.presence.pop(target, None)
        elif style == "outerHTML" and target == "members":
            self.members, self.presence = {}, {}
            for li in element.children:
                self._show_member(li)
        elif style == "outerHTML" and target in self.members:
            self._show_member(element)
        elif style == "outerHTML" and target.startswith("presence-"):
            self.presence[target.replace("presence-", "member-")] = element.all_text()
        elif style == "outerHTML" and target == "member-count":
            self.count = element.all_text()
        elif style == "outerHTML" and target == "online-count":
            self.online_count = element.all_text()
        elif style == "outerHTML" and target == "my-name":
            self.my_name = element.all_text()
        elif style == "outerHTML" and target in {"you", "connection", "hand-form"}:
            pass  # the "you left from another tab" notice; the connection indicator
        elif style == "innerHTML" and target == "announcement":
            self.announcement = element.all_text()
        else:
            self.errors.append(f"unmodelled swap {style} on #{target}")

    def _show_member(self, li: Element) -> None:
        self.members[li.id] = _member_name(li)
        for child in li.children:
            if child.id and child.id.startswith("presence-"):
                self.presence[li.id] = child.all_text()

    def _exists(self, dom_id: str) -> bool:
        fixed = {"members", "member-count", "my-name", "you", "connection", "announcement"}
        fixed |= {"hand-form"}
        fixed |= {"online-count"}
        member = dom_id.replace("presence-", "member-", 1)
        return dom_id in fixed or member in self.members


def _member_name(li: Element) -> str:
    return next(
        child.all_text() for child in li.children if "member__name" in child.attrs.get("class", "")
    )
