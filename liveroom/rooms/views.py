from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_cookie
from django_htmx.middleware import HtmxDetails

from liveroom.presence import room_presence
from liveroom.rooms import cleanup
from liveroom.rooms.crowds import SEARCH_MAX_LENGTH, search
from liveroom.rooms.forms import JoinForm
from liveroom.rooms.fragments import presence_context, render_own_entry
from liveroom.rooms.idle import remove_idle_members
from liveroom.rooms.listing import rooms_page
from liveroom.rooms.member_lists import member_lists
from liveroom.rooms.membership import member_join, member_leave, member_show
from liveroom.rooms.models import Member, Room
from liveroom.rooms.preferences import PAUSED_KEY, QUIET_KEY, preferences
from liveroom.rooms.ratelimit import limit_membership_changes
from liveroom.rooms.sessions import started_here, stored_data


def unsaved_room(slug: str) -> Room:
    """A Room for `slug`, not looked up. 404 for a bad slug."""
    if not Room.is_valid_slug(slug):
        raise Http404(gettext("Room names use lowercase letters, digits and hyphens."))
    return Room(slug=slug)


def membership(request: HttpRequest, room: Room) -> Member | None:
    """The session's membership of `room` (looked up by slug), read with its room and, where
    the session store is the database, the session's data (`session_data`, None if expired)."""
    session_key = request.session.session_key
    if not session_key:
        return None
    members = Member.objects.select_related("room")
    if (session_data := stored_data("session_key")) is not None:
        members = members.annotate(session_data=session_data)
    return members.filter(room__slug=room.slug, session_key=session_key).first()


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return redirect("room")


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails  # django-htmx's middleware sets it


@require_GET
@vary_on_cookie  # whose page it is
def room(request: HtmxHttpRequest, slug: str = Room.DEFAULT_SLUG) -> HttpResponse:
    """The room page for its member (others are sent to the join form); with ?q=..., what a
    search by name found in it (htmx asks for that alone as one types)."""
    room = unsaved_room(slug)
    me = membership(request, room)  # one query: the member, the room's version, the session
    if me is None:
        return redirect(room.join_url)
    room = me.room
    presence = room_presence(room.slug)
    found = search(room.pk, request.GET.get("q", ""))
    context = {"room": room, "me": me, "found": found, "search_max_length": SEARCH_MAX_LENGTH}
    context |= presence_context(presence)
    if request.htmx:  # a search as one types: its answer alone
        return render(request, "liveroom/room.html#search-results", context)
    # The list this process keeps for the room's version: rendered once for every load.
    member_list = member_lists.current(room.slug, room.pk, room.version)
    context |= {
        "members_html": mark_safe(  # entries rendered from the template, names escaped
            member_lists.page_entries(member_list, presence, me.pk, render_own_entry(me, presence))
        ),
        "count": member_list.count,
        "crowded": member_list.crowded,
        "listed": len(member_list.shown),
        # The socket is told what the page shows, and sends only what it lacks.
        "version": member_list.version,
        "presence_sequence": presence.sequence,
        "name_max_length": Member.NAME_MAX_LENGTH,
    }
    context["paused"], context["quiet"] = preferences(request.session, read_with=me)
    return render(request, "liveroom/room.html", context, status=400 if found.error else 200)


@require_http_methods(["GET", "POST"])
@limit_membership_changes
def join(request: HttpRequest, slug: str = Room.DEFAULT_SLUG) -> HttpResponse:
    if request.method == "GET":
        room = unsaved_room(slug)  # the form needs no more of it than its name
        if membership(request, room) is not None:
            return redirect(room.url())
        return render(request, "liveroom/join.html", {"room": room, "form": JoinForm()})

    room = unsaved_room(slug)  # member_join finds it (or starts it), and locks it
    form = JoinForm(request.POST)
    if not form.is_valid():
        return render(request, "liveroom/join.html", {"room": room, "form": form}, status=400)
    if not request.session.session_key:
        request.session.create()
    remove_idle_members(room)
    name = form.cleaned_data["name"]
    session_key = request.session.session_key
    assert session_key is not None  # just created if it was missing
    member_join(
        room_slug=room.slug,
        session_key=session_key,
        name=name,
        new_session=started_here(request.session),
    )
    cleanup.sweeps.now_and_then()
    return redirect(room.url())


@require_POST
@limit_membership_changes
def leave(request: HttpRequest, slug: str = Room.DEFAULT_SLUG) -> HttpResponse:
    room = unsaved_room(slug)  # member_leave finds it, and locks it
    remove_idle_members(room)
    if request.session.session_key:
        member_leave(room_slug=room.slug, session_key=request.session.session_key)
    cleanup.sweeps.now_and_then()
    return redirect(room.join_url)


@require_POST
@limit_membership_changes
def hand(request: HttpRequest, slug: str = Room.DEFAULT_SLUG) -> HttpResponse:
    """Raise (`raised=1`) or lower (`raised=0`) the session's hand; back to the room page."""
    room = unsaved_room(slug)
    raised = request.POST.get("raised")
    if raised not in {"0", "1"}:
        return HttpResponseBadRequest(
            gettext("raised must be 1 (raise the hand) or 0 (lower it)."),
            content_type="text/plain; charset=utf-8",
        )
    session_key = request.session.session_key
    if (
        not session_key
        or member_show(room_slug=room.slug, session_key=session_key, hand_raised=raised == "1")
        is None
    ):
        return redirect(room.join_url)  # not a member (any more): the join form says so
    return redirect(room.url())


@require_POST
def live(request: HttpRequest, slug: str = Room.DEFAULT_SLUG) -> HttpResponse:
    """Pause (`live=pause`) or resume (`live=resume`) live updates, or turn spoken announcements
    off (`spoken=off`) or on (`spoken=on`), for the session's room pages; back to the room.
    Without JavaScript this is how the page's buttons work; with it they go over its socket."""
    room = unsaved_room(slug)
    paused, quiet = preferences(request.session)
    live, spoken = request.POST.get("live"), request.POST.get("spoken")
    if live in {"pause", "resume"} and spoken is None:
        paused = live == "pause"
    elif spoken in {"on", "off"} and live is None:
        quiet = spoken == "off"
    else:
        return HttpResponseBadRequest(
            gettext("Send live=pause or live=resume, or spoken=off or spoken=on."),
            content_type="text/plain; charset=utf-8",
        )
    request.session[PAUSED_KEY], request.session[QUIET_KEY] = paused, quiet
    return redirect(room.url())


@require_GET
def rooms(request: HttpRequest) -> HttpResponse:
    """Every room with members, busiest first; ?name=... opens (or starts) a room."""
    if name := request.GET.get("name", "").strip().lower():
        if Room.is_valid_slug(name):
            return redirect(Room(slug=name).url())
        error = gettext(
            "Room names use lowercase letters, digits and hyphens (up to 50), and not "
            "“join”, “leave”, “hand” or “live”."
        )
    else:
        error = ""
    return render(
        request,
        "liveroom/rooms.html",
        {"rooms": rooms_page(request.GET.get("page")), "error": error},
        status=400 if error else 200,
    )
