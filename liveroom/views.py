from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from liveroom.forms import JoinForm
from liveroom.membership import member_join, member_leave
from liveroom.models import Member, Room
from liveroom.ratelimit import limit_membership_changes


def current_member(request: HttpRequest, room: Room) -> Member | None:
    session_key = request.session.session_key
    if not session_key:
        return None
    return room.members.filter(session_key=session_key).first()


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return redirect("room")


@require_GET
def room(request: HttpRequest) -> HttpResponse:
    room = Room.default()
    me = current_member(request, room)
    if me is None:
        return redirect("join")
    members = list(room.members.all())
    context = {
        "me": me,
        "members": members,
        "count": len(members),
        "name_max_length": Member.NAME_MAX_LENGTH,
    }
    return render(request, "room.html", context)


@require_http_methods(["GET", "POST"])
@limit_membership_changes
def join(request: HttpRequest) -> HttpResponse:
    room = Room.default()
    if request.method == "GET":
        if current_member(request, room) is not None:
            return redirect("room")
        return render(request, "join.html", {"form": JoinForm()})

    form = JoinForm(request.POST)
    if not form.is_valid():
        return render(request, "join.html", {"form": form}, status=400)
    if not request.session.session_key:
        request.session.create()
    member_join(room=room, session_key=request.session.session_key, name=form.cleaned_data["name"])
    return redirect("room")


@require_POST
@limit_membership_changes
def leave(request: HttpRequest) -> HttpResponse:
    if request.session.session_key:
        member_leave(room=Room.default(), session_key=request.session.session_key)
    return redirect("join")
