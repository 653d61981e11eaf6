"""Simulated CCAI Platform and Salesforce, for ``bridge serve --sandbox`` and for tests."""
