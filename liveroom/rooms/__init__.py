"""The domain: rooms, members, membership changes, forms, views and the HTML fragments that show
them. It knows nothing of Channels or daphne: a change is saved and announced with the
`room_changed` signal (liveroom/rooms/signals.py), and the live transport takes it from there."""
