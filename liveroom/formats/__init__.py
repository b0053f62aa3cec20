"""Number formats where Django's locale data differs from how the language writes them
(FORMAT_MODULE_PATH): each module holds only what it changes; the rest is Django's."""
