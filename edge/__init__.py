"""The device side: replay files or record a microphone, code the audio, stream it over gRPC.

Clips come from ``edge.sources`` (files), ``edge.live_sources`` (the microphone) and
``edge.network_sources`` (RTSP, HTTP); ``edge.client`` streams them (``stream_clips``,
``EdgeStreamer``, ``classify_file``; its docstring maps the engine's modules), ``edge.spool``
keeps them until answered, ``edge.output`` shows and records the results, ``edge.station``
sends them on to MQTT and webhooks, and ``edge.cli`` is ``asc-edge``.
An IoT device must not need torch: nothing here imports it (a test checks).
"""
