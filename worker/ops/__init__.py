"""Running it: RQ worker processes (rqworker), the scheduler tick (scheduler), /metrics and /healthz
(metrics), the embedded Redis (embedded) and the one signal helper (signals)."""
