"""The server integration: daphne as liveroom runs it (liveroom/server/daphne.py), started by
`python -m liveroom.server`. It imports nothing from the application."""
