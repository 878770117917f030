"""Controllers: the app's long-lived processes as plain state machines (no widgets)."""
