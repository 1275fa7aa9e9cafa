"""Steam on the device: roots and users, shortcuts.vdf, app ids, artwork files, restarts."""
