"""The app's panes and their small building blocks."""
