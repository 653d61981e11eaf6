"""The bridge's own JSON API, ``/api/v1``: sends (queue one, read one), previews, the opt-out list.

For agents' buttons, Flow HTTP callouts, Apex and scripts. Callers authenticate with
``Authorization: Bearer <key>`` (``BRIDGE_API_KEY``); refusals are answered as ``{"error": "..."}``
and counted under the door ``api``.
"""
