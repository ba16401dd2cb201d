"""The actors: mailboxes, the event bus, and the session, manager, notifier, persistence and
journal actors."""
