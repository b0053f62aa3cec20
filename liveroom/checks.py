"""The template contract, checked where Django checks a project: `manage.py check`, every
`migrate`, CI. The room page and every piece the server pushes to it are rendered with sample
members (the templates a project overrides included), and each pushed top-level element must
carry `hx-swap-oob`, swap into an element the page has, and be an element the HTML parser keeps
at the top level of a message (not a table row); a search's answer must not repeat the live
list's ids. docs/templates.md says why each rule holds.
"""

from html.parser import HTMLParser

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.http import HttpRequest
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from liveroom.rooms.crowds import Found
from liveroom.rooms.fragments import CHANGE_PARTIALS, ROOM_TEMPLATE, render_entries
from liveroom.rooms.models import Member, Room

# What the HTML parser drops at the top level of a message (htmx swaps what it keeps).
TABLE_PARTS = frozenset({"tr", "td", "th", "tbody", "thead", "tfoot", "caption", "col", "colgroup"})

# The file that holds what each pushed piece is made of, for the messages.
PIECE_FILES = {
    "member-joined": "liveroom/room/member.html",
    "member-updated": "liveroom/room/member.html",
    "member-left": "liveroom/room/member.html",
    "snapshot-you": "liveroom/room/member.html, count.html, my_name.html, hand_form.html, ...",
    "rendered-members": "liveroom/room/members.html, members_hint.html",
    "members-listed": "liveroom/room/members.html, members_hint.html, count.html",
    "presence-changed": "liveroom/room/presence.html, online_count.html",
    "connection": "liveroom/room/connection.html",
    "notice": "liveroom/room/notice.html",
    "announce": "liveroom/room.html",
    "live-controls": "liveroom/room/live_controls.html, live_status.html, connection.html",
    "announcement-region": "liveroom/room/announcement.html",
}


class Elements(HTMLParser):
    """The ids of a document, and its top-level elements (tag, attributes) as written."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.top: list[tuple[str, dict[str, str]]] = []
        self.depth = 0
        self.feed(html)

    VOID = frozenset({"input", "br", "img", "meta", "link", "hr", "source", "col", "wbr"})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if "id" in found:
            self.ids.add(found["id"])
        if self.depth == 0:
            self.top.append((tag, found))
        if tag not in self.VOID:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID:
            self.depth = max(0, self.depth - 1)


def sample() -> dict:
    """Two members, the page's own with its hand down, the other's raised; both online (when
    presence is on, as LIVEROOM_PRESENCE says)."""
    room = Room(slug=Room.DEFAULT_SLUG, version=2)
    me = Member(pk=1, name="Ada", room=room)
    other = Member(pk=2, name="Grace", room=room, hand_raised=True)
    on = settings.LIVEROOM_PRESENCE
    presence = {"presence": on, "online": frozenset({1, 2} if on else ()), "online_count": 2}
    entries = "".join(render_entries(member)[0] for member in (me, other))
    return {"room": room, "me": me, "other": other, "entries": entries} | presence


def pushed_pieces(data: dict) -> dict[str, str]:
    """Every piece the server pushes, rendered as it is pushed."""
    common = {key: data[key] for key in ("room", "presence", "online", "online_count")}
    common |= {"count": 2, "oob": True}
    newcomer = Member(pk=3, name="Lin", room=data["room"])
    pieces = {}
    for change, member in (("joined", newcomer), ("updated", data["other"]),
                           ("left", data["other"])):  # fmt: skip
        context = common | {"member": member}
        pieces[CHANGE_PARTIALS[change]] = render(CHANGE_PARTIALS[change], context)
    pieces["announce"] = render("announce", {"announcement": "Lin joined"})
    pieces["snapshot-you"] = render("snapshot-you", common | {"me": data["me"]})
    entries = {"members_html": mark_safe(data["entries"])}  # rendered from the template
    pieces["rendered-members"] = render("rendered-members", common | entries)
    crowded = {"count": 300, "crowded": True, "listed": 2}  # a crowded room's recent arrivals
    pieces["members-listed"] = render("members-listed", common | entries | crowded)
    if data["presence"]:
        pieces["presence-changed"] = render(
            "presence-changed", common | {"members": [data["other"]]}
        )
    pieces["connection"] = render("connection", {"oob": True})
    pieces["live-controls"] = render(
        "live-controls", common | {"paused": True, "quiet": True, "missed": None}
    )
    pieces["announcement-region"] = render("announcement-region", {"quiet": True, "oob": True})
    pieces["notice"] = render(
        "notice", common | {"notice": "removed", "name_max_length": Member.NAME_MAX_LENGTH}
    )
    return pieces


def search_answer(data: dict) -> str:
    """What a search for both sample members answers (htmx swaps it in as one types)."""
    found = Found(query="a", members=[data["me"], data["other"]])
    context = {key: data[key] for key in ("room", "me", "presence", "online")}
    return render("search-results", context | {"found": found})


def render(partial: str, context: dict) -> str:
    return render_to_string(f"{ROOM_TEMPLATE}#{partial}", context)


def room_page(data: dict) -> str:
    context = {key: data[key] for key in ("room", "me", "presence", "online", "online_count")}
    context |= {"members_html": mark_safe(data["entries"]), "count": 2, "version": 2,
                "presence_sequence": 1, "name_max_length": Member.NAME_MAX_LENGTH}  # fmt: skip
    request = HttpRequest()  # for the page's CSRF tokens and context processors
    request.method, request.path = "GET", data["room"].url()
    return render_to_string(ROOM_TEMPLATE, context, request=request)


def target_of(oob: str, element_id: str | None) -> str | None:
    """The id an out-of-band swap lands on: `true`/a style alone swap the element's own id;
    `style:#id...` a selector's first id."""
    _, _, selector = oob.partition(":")
    if not selector:
        return element_id
    if not selector.startswith("#"):
        return None
    return selector.removeprefix("#").split(":")[0].split(" ")[0]


@register(Tags.templates)
def check_room_templates(app_configs=None, **kwargs) -> list[CheckMessage]:
    try:
        data = sample()
        page = Elements(room_page(data))
        pieces = pushed_pieces(data)
        answer = Elements(search_answer(data))
    except (TemplateDoesNotExist, TemplateSyntaxError) as error:
        return [Error(f"The room's templates do not render: {error}", id="liveroom.E000")]
    errors: list[CheckMessage] = []
    for piece, html in pieces.items():
        where = f"{ROOM_TEMPLATE}#{piece} ({PIECE_FILES[piece]})"
        for tag, attrs in Elements(html).top:
            shown = f"<{tag}{' id=' + repr(attrs['id']) if 'id' in attrs else ''}>"
            if tag in TABLE_PARTS:
                errors.append(Error(
                    f"{where}: pushes {shown}, a table part the HTML parser drops at the top of a "
                    "message: the page would never show it",
                    hint="Push whole elements that stand alone (li, div, p, section).",
                    id="liveroom.E001",
                ))  # fmt: skip
                continue
            oob = attrs.get("hx-swap-oob")
            if oob is None:
                errors.append(Error(
                    f"{where}: pushes {shown} without hx-swap-oob: htmx would replace by id what "
                    "should be added, deleted or swapped inside",
                    hint='Keep `{% if oob %} hx-swap-oob="true"{% endif %}` (or the piece\'s '
                    "member_swap) on every element a piece pushes.",
                    id="liveroom.E002",
                ))  # fmt: skip
                continue
            target = target_of(oob, attrs.get("id"))
            if target is None or target not in page.ids:
                errors.append(Error(
                    f"{where}: pushes {shown} into #{target}, which the room page "
                    f"({ROOM_TEMPLATE}) does not have: htmx would drop it (oobErrorNoTarget)",
                    hint="Keep the ids in docs/templates.md on the page and on what is pushed.",
                    id="liveroom.E003",
                ))  # fmt: skip
    if repeated := sorted(answer.ids & page.ids - {"search-results"}):
        errors.append(Error(
            f"{ROOM_TEMPLATE}#search-results (liveroom/room/search_results.html, member.html): "
            f"a search's answer repeats the ids {', '.join(repeated)} of the live list: pushed "
            "changes would land on the found entry instead of the list's",
            hint='Put ids on an entry only `{% if not member_found %}`, as liveroom\'s '
            "member.html does.",
            id="liveroom.E004",
        ))  # fmt: skip
    return errors
