"""Operations hooks: the health file, Prometheus metrics, notifications, the mailcow UI, and
the log configuration. They observe cycles; none may stop certificate work."""
