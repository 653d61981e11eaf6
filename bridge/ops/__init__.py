"""What operators run and read: the ``bridge`` command line, the dashboard, the overview of the
whole bridge (``bridge status``, the dashboard, the gauges on ``/metrics``), retries and
``bridge check``."""
