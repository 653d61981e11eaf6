"""CCAI Platform: its client, its chat vocabulary, its session-events door and the tenant's pacing."""
