"""The job engine: persisted jobs, scheduler, poller, delivery, recovery."""
