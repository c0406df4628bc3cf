"""When syncs run: the scheduler, its request queues (one process or replicas), and polling."""
