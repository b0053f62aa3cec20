"""The live transport: how a saved change reaches every open page.

- publish.py: after a view's response, a change is rendered once and published to the room's
  group on the channel layer (after_response.py runs it then).
- core.py: one LiveCore per process (per event loop) owns everything live there: the open
  pages, the layer subscription that hands each room message to them and the cached frames; it
  starts the watch (watch.py: what heals what the layer lost, heartbeats), presence announcing
  (announcer.py), and supervises its tasks (supervisor.py).
- page.py: what one page shows (versions, sequences) and what it makes of a message.
- consumers.py: the sockets of room pages and of /rooms/.
- messages.py and sockets.py: the typed seams (wire messages; a page's socket).
"""
