"""The device side: replay files or record a microphone, code the audio, stream it over gRPC.

``edge.sources`` makes clips, ``edge.client`` streams them (``stream_clips``, ``EdgeStreamer``,
``classify_file``), ``edge.output`` shows and records the results, ``edge.cli`` is ``asc-edge``.
An IoT device must not need torch: nothing here imports it (a test checks).
"""
