"""Salesforce's Pub/Sub API, as published, and the Python code generated from it.

``pubsub_api.proto`` is Salesforce's file unchanged: https://github.com/forcedotcom/pub-sub-api,
``pubsub_api.proto`` at commit 03d49a9c21c10ca3b55fa7ab30db6ee69250378e (2024-05-30), released
under CC0 1.0 Universal (``LICENSE`` beside it). ``pubsub_api_pb2.py`` and ``pubsub_api_pb2_grpc.py``
come from grpcio-tools' protoc, their ``.pyi`` files from mypy-protobuf; none is edited by hand.
Regenerate them all with ``python -m bridge.crm.salesforce._pubsub`` (the test extra installs the
tools); the test suite checks that the committed files match a fresh generation.
"""
