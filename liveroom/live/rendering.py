"""Room messages as each page's language shows them: a message carries what changed, and this
process renders it once per language its pages use, when the first page in that language takes
it (the render is kept on the message), so a room split across languages costs a render per
language, never one per page.
"""

from django.utils import translation

from liveroom.live.messages import CHANGE_EVENT, CLOSED_EVENT, PRESENCE_EVENT, ROOMS_EVENT, Message
from liveroom.rooms import fragments


def html_of(message: Message, language: str) -> str:
    """The swaps `message` makes on a page in `language`."""
    if message["type"] == ROOMS_EVENT:
        rendered = message["html"]
        return rendered.get(language) or next(iter(rendered.values()))
    cache = message.setdefault("rendered", {})
    html = cache.get(language)
    if html is None:
        with translation.override(language):
            html = cache[language] = _render(message)
    return html


def _render(message: Message) -> str:
    if message["type"] == CHANGE_EVENT:
        return fragments.render_change(message["data"])
    if message["type"] == PRESENCE_EVENT:
        return fragments.render_presence_change(message["data"])
    assert message["type"] == CLOSED_EVENT, message["type"]
    return fragments.render_notice(message["group"].removeprefix("room."), "closed")


def kind_of(message: Message) -> str | None:
    """What `message` is announced as ("joined", "left", "updated", "away"); None if it is not
    spoken: coming online (it follows every join), or a message that came already rendered
    (`rendered` alone, no `data`: a test's)."""
    if "data" not in message:
        return None
    if message["type"] == CHANGE_EVENT:
        change = message["data"]["change"]
        return "left" if change == "removed" else change
    if message["type"] == PRESENCE_EVENT and message["data"]["went_away"]:
        return "away"
    return None


def words_of(messages: list[Message], language: str) -> str:
    """What screen readers hear of `messages` (announced ones only) in `language`: one
    message's own words, or a sum of several by kind ("12 people joined")."""
    with translation.override(language):
        if len(messages) == 1:
            message = messages[0]
            if message["type"] == CHANGE_EVENT:
                return fragments.change_words(message["data"])
            if message["type"] == PRESENCE_EVENT:
                return fragments.away_words(message["data"]["went_away"])
        kinds: dict[str, int] = {}
        for message in messages:
            kind = kind_of(message)
            if kind == "away" and message["type"] == PRESENCE_EVENT:
                kinds[kind] = kinds.get(kind, 0) + len(message["data"]["went_away"])
            elif kind is not None:
                kinds[kind] = kinds.get(kind, 0) + 1
        return fragments.burst_words(kinds)


def announcement_html(messages: list[Message], language: str) -> str:
    """The out-of-band swap of the page's live region that says `messages`."""
    words = words_of(messages, language)
    with translation.override(language):
        return fragments.render_announcement(words)
